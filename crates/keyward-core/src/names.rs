//! One table per enum from its variants to the names they are stored (or
//! configured) under. [`stored_names!`] makes `ALL`, `as_str`, `parse` and
//! `Display` from that one table, so the two directions cannot drift: a
//! variant missing from the table is a compile error in `as_str`'s `match`,
//! and `parse` is `as_str` read backwards.

/// `stored_names!(Type { (Variant) => "name", (Variant(A, B)) => "other", … })`.
/// Each variant is written in parentheses, as a pattern and an expression
/// alike; unit variants and variants of unit-like enums only.
macro_rules! stored_names {
    ($ty:ident { $( ($($variant:tt)+) => $name:literal ),+ $(,)? }) => {
        impl $ty {
            /// Every variant, in the order of its table.
            pub const ALL: [$ty; [$($name),+].len()] = [$($ty::$($variant)+),+];

            /// The name it is stored under.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$($variant)+ => $name,)+
                }
            }

            /// The variant a stored name stands for; `None` for a name none has.
            pub fn parse(name: &str) -> Option<$ty> {
                $ty::ALL.into_iter().find(|v| v.as_str() == name)
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use stored_names;

#[cfg(test)]
mod tests {
    use crate::*;

    /// Every table reads back, names no other variant, and refuses a name
    /// it does not have.
    #[test]
    fn every_table_reads_back() {
        macro_rules! check {
            ($($ty:ident),+) => {$(
                for v in $ty::ALL {
                    assert_eq!($ty::parse(v.as_str()), Some(v));
                    assert_eq!(v.to_string(), v.as_str());
                }
                assert_eq!($ty::parse("no such name"), None);
            )+};
        }
        check!(
            Endpoint,
            ObjectKind,
            UpstreamKind,
            AuditTarget,
            AuditAction,
            UserRole,
            MemberRole,
            RevokeReason,
            NoticeChannel
        );
    }

    /// The records' enums are also serialized (snake_case): as their stored names.
    #[test]
    fn serde_names_are_the_stored_names() {
        fn check<T: serde::Serialize + Copy>(all: &[T], as_str: fn(T) -> &'static str) {
            for &v in all {
                assert_eq!(
                    serde_json::to_string(&v).unwrap(),
                    format!("\"{}\"", as_str(v))
                );
            }
        }
        check(&UserRole::ALL, UserRole::as_str);
        check(&MemberRole::ALL, MemberRole::as_str);
        check(&RevokeReason::ALL, RevokeReason::as_str);
    }
}
