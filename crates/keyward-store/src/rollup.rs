//! What both ledger writers (sqlx's, `sqlite_ledger`'s) share: the ledger's
//! insert, and the daily roll-up of its rows, summed in memory before it is
//! written: one upsert per (day, project, key, model) instead of one per
//! request.

use std::collections::HashMap;

use keyward_core::records::UsageEvent;

/// (day, project, key, model).
pub(crate) type DayGroup<'e> = (i64, &'e str, &'e str, &'e str);

/// What a group's rows add up to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Sums {
    pub requests: i64,
    pub errors: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost_micros: i64,
}

impl Sums {
    /// Adds one row; saturating: an upstream's token counts are not ours
    /// to trust.
    fn add(&mut self, e: &UsageEvent) {
        self.requests = self.requests.saturating_add(1);
        self.errors = self.errors.saturating_add(i64::from(e.status >= 400));
        self.prompt_tokens = self.prompt_tokens.saturating_add(e.prompt_tokens);
        self.completion_tokens = self.completion_tokens.saturating_add(e.completion_tokens);
        self.cost_micros = self.cost_micros.saturating_add(e.cost.0);
    }

    /// The sums in the order of [`SUM_COLUMNS`], for binding.
    pub(crate) fn in_column_order(&self) -> [i64; 5] {
        [
            self.requests,
            self.errors,
            self.prompt_tokens,
            self.completion_tokens,
            self.cost_micros,
        ]
    }
}

/// The columns [`Sums`] adds to, in [`Sums::in_column_order`]'s order.
pub(crate) const SUM_COLUMNS: [&str; 5] = [
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "cost_micros",
];

/// Sums `events` (the ledger rows really inserted) per group.
pub(crate) fn daily_sums<'e>(
    events: impl Iterator<Item = &'e UsageEvent>,
) -> HashMap<DayGroup<'e>, Sums> {
    let mut daily: HashMap<DayGroup<'e>, Sums> = HashMap::new();
    for e in events {
        let day = keyward_core::time::day_start(e.created_at);
        daily
            .entry((day, e.project_id.as_str(), e.key_id.as_str(), &*e.model))
            .or_default()
            .add(e);
    }
    daily
}

/// The upsert of roll-up rows whose VALUES are `values`: the day, project,
/// key and model, then the [`SUM_COLUMNS`], added to an existing row.
pub(crate) fn upsert_sql(values: &str) -> String {
    upsert_from(&format!("VALUES {values}"))
}

/// The upsert of roll-up rows read from `rows` (a `VALUES …` list or a
/// `SELECT`), in the same column order.
pub(crate) fn upsert_from(rows: &str) -> String {
    let sets: Vec<String> = SUM_COLUMNS
        .iter()
        .map(|c| format!("{c} = usage_daily.{c} + excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO usage_daily (day, project_id, key_id, model, {}) {rows} \
         ON CONFLICT (day, project_id, key_id, model) DO UPDATE SET {}",
        SUM_COLUMNS.join(", "),
        sets.join(", ")
    )
}

/// The columns of a ledger row, in the order rows are bound.
pub(crate) const LEDGER_COLUMNS: &str =
    "request_id, key_id, project_id, user_id, model, endpoint, \
     prompt_tokens, completion_tokens, cost_micros, status, latency_ms, created_at";

/// The insert of ledger rows whose VALUES are `values`; a row whose request
/// id is already stored (a batch retried after a failed commit) is skipped.
pub(crate) fn ledger_insert_sql(values: &str) -> String {
    format!(
        "INSERT INTO usage_ledger ({LEDGER_COLUMNS}) VALUES {values} ON CONFLICT (request_id) DO NOTHING"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_core::{KeyId, Micros, ProjectId, UserId};

    fn event(project: &ProjectId, key: &KeyId, created_at: i64, status: u16) -> UsageEvent {
        UsageEvent {
            request_id: format!("req_{created_at}"),
            key_id: key.clone(),
            project_id: project.clone(),
            user_id: UserId::generate(),
            model: "m".into(),
            endpoint: keyward_core::Endpoint::ChatCompletions,
            prompt_tokens: 10,
            completion_tokens: 5,
            cost: Micros(7),
            status,
            latency_ms: 1,
            created_at,
        }
    }

    #[test]
    fn sums_per_day_and_key() {
        let day = 86_400 * 20_000;
        let p = ProjectId::generate();
        let (a, b) = (KeyId::generate(), KeyId::generate());
        let events = [
            event(&p, &a, day + 5, 200),
            event(&p, &a, day + 86_399, 500),
            event(&p, &a, day + 86_400, 200),
            event(&p, &b, day + 1, 429),
        ];
        let sums = daily_sums(events.iter());
        let group =
            |day, key: &KeyId| sums[&(day, p.as_str(), key.as_str(), "m")].in_column_order();
        assert_eq!(sums.len(), 3);
        assert_eq!(
            group(day, &a),
            [2, 1, 20, 10, 14],
            "two requests of the first day, one an error"
        );
        assert_eq!(group(day + 86_400, &a), [1, 0, 10, 5, 7]);
        assert_eq!(group(day, &b), [1, 1, 10, 5, 7]);
    }
}
