//! Numbered placeholders (`$1`, `$2`, …) handed out as values are added, so
//! a query built piece by piece (optional filters, `IN` lists) never counts
//! its parameters by hand. Both backends read `$n` through sqlx's `Any`
//! driver. Multi-row inserts use [`super::Backend::values`] instead.

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::Any;

/// One value to bind.
#[derive(Debug, Clone)]
enum Param {
    Text(String),
    Int(i64),
}

/// The values of a query, in placeholder order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Params(Vec<Param>);

impl Params {
    fn push(&mut self, p: Param) -> String {
        self.0.push(p);
        format!("${}", self.0.len())
    }

    /// The placeholder the next value added (or bound after these) gets.
    pub(crate) fn next_mark(&self) -> String {
        format!("${}", self.0.len() + 1)
    }

    /// Adds a text value; its placeholder.
    pub(crate) fn text(&mut self, v: &str) -> String {
        self.push(Param::Text(v.to_owned()))
    }

    /// Adds an integer value; its placeholder.
    pub(crate) fn int(&mut self, v: i64) -> String {
        self.push(Param::Int(v))
    }

    /// Adds text values; their placeholders, comma-separated (for `IN (…)`).
    pub(crate) fn texts<'v>(&mut self, values: impl IntoIterator<Item = &'v str>) -> String {
        let marks: Vec<String> = values.into_iter().map(|v| self.text(v)).collect();
        marks.join(", ")
    }

    /// Adds integer values; their placeholders, comma-separated.
    pub(crate) fn ints(&mut self, values: impl IntoIterator<Item = i64>) -> String {
        let marks: Vec<String> = values.into_iter().map(|v| self.int(v)).collect();
        marks.join(", ")
    }

    /// Binds every value to `query`, in order.
    pub(crate) fn bind_to<'q>(
        &'q self,
        mut query: Query<'q, Any, AnyArguments<'q>>,
    ) -> Query<'q, Any, AnyArguments<'q>> {
        for p in &self.0 {
            query = match p {
                Param::Text(t) => query.bind(t.as_str()),
                Param::Int(i) => query.bind(*i),
            };
        }
        query
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_values_in_the_order_they_are_added() {
        let mut p = Params::default();
        assert_eq!(p.texts(["a", "b"]), "$1, $2");
        assert_eq!(p.int(7), "$3");
        assert_eq!(p.ints([8, 9]), "$4, $5");
        assert_eq!(p.next_mark(), "$6");
        assert_eq!(p.text("c"), "$6");
        assert_eq!(p.0.len(), 6);
    }
}
