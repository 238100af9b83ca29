//! Where `--revoke` tells the server a key was found: a file's path relative
//! to the top of its git work tree (outside one, to the directory scanned),
//! or `commit:path` from history. Never a path of the scanning machine: the
//! server passes it on to the key's owner (notice, email, webhook) and keeps
//! it in the audit log, and neither needs to know how this machine is laid
//! out or whose home directory the scan ran in. Names go escaped, as they
//! are printed.

use std::path::{Path, PathBuf};

use keyward_scan::escape::escape_path;
use keyward_scan::Location;

/// The scanned roots, each with the directory its findings are named
/// relative to (canonical), when it could be found.
pub struct Places {
    roots: Vec<(PathBuf, Option<PathBuf>)>,
}

impl Places {
    /// Asks git once per root; only `--revoke` needs this.
    pub fn new(roots: &[PathBuf]) -> Places {
        Places {
            roots: roots.iter().map(|r| (r.clone(), base(r))).collect(),
        }
    }

    /// What the server records for `location`.
    pub fn of(&self, location: &Location) -> String {
        let Location::File(path) = location else {
            // History paths are relative to the repository already.
            return location.to_string();
        };
        let base = self
            .roots
            .iter()
            .find(|(root, _)| path.starts_with(root))
            .and_then(|(_, base)| base.as_deref());
        let relative = base.and_then(|base| {
            let full = path.canonicalize().ok()?;
            Some(full.strip_prefix(base).ok()?.to_path_buf())
        });
        // A file whose place cannot be worked out goes by its name alone.
        match relative {
            Some(relative) if !relative.as_os_str().is_empty() => escape_path(&relative),
            _ => escape_path(Path::new(path.file_name().unwrap_or(path.as_os_str()))),
        }
    }
}

/// The top of the work tree holding `root`, else the directory scanned (a
/// file's own directory when a file was named).
fn base(root: &Path) -> Option<PathBuf> {
    let dir = match root.is_dir() {
        true => root,
        false => root
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    };
    keyward_scan::work_tree_root(dir).or_else(|| dir.canonicalize().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_repository_paths_are_relative_to_the_scanned_directory() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("deploy")).unwrap();
        let file = tree.join("deploy/env.sh");
        std::fs::write(&file, "x").unwrap();
        let places = Places::new(std::slice::from_ref(&tree));
        assert_eq!(places.of(&Location::File(file.clone())), "deploy/env.sh");
        // A file named directly goes by its name.
        let places = Places::new(std::slice::from_ref(&file));
        assert_eq!(places.of(&Location::File(file)), "env.sh");
    }
}
