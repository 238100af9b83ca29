//! The usage ledger and its daily roll-up.

use super::*;

pub(super) fn usage_from_row(row: &AnyRow) -> Result<UsageEvent> {
    let endpoint: String = row.try_get("endpoint")?;
    let status: i64 = row.try_get("status")?;
    Ok(UsageEvent {
        request_id: row.try_get("request_id")?,
        key_id: parse_id(row, "key_id", KeyId::parse)?,
        project_id: parse_id(row, "project_id", ProjectId::parse)?,
        user_id: parse_id(row, "user_id", UserId::parse)?,
        model: row.try_get::<String, _>("model")?.into(),
        endpoint: keyward_core::Endpoint::parse(&endpoint)
            .ok_or_else(|| corrupt(format!("ledger endpoint {endpoint}")))?,
        prompt_tokens: row.try_get("prompt_tokens")?,
        completion_tokens: row.try_get("completion_tokens")?,
        cost: Micros(row.try_get("cost_micros")?),
        status: u16::try_from(status).map_err(|_| corrupt(format!("ledger status {status}")))?,
        latency_ms: row.try_get("latency_ms")?,
        created_at: row.try_get("created_at")?,
    })
}

#[async_trait]
impl UsageStore for SqlStore {
    async fn record_usage(&self, events: &[UsageEvent]) -> Result<()> {
        if let Some(ledger) = &self.ledger {
            return blocking(|| ledger.record(events));
        }
        if let Some(ledger) = &self.pg_ledger {
            return ledger.record(events).await;
        }
        let mut tx = self.pool.begin().await?;
        // Ledger rows, a few hundred per statement; RETURNING names the rows
        // really inserted, so a batch retried after a failed commit is not
        // counted twice in the roll-up.
        let mut inserted = std::collections::HashSet::new();
        for chunk in statement_chunks(events) {
            let sql = format!(
                "{} RETURNING request_id",
                rollup::ledger_insert_sql(&self.backend.values(chunk.len(), 12))
            );
            let mut query = sqlx::query(&sql);
            for e in chunk {
                query = query
                    .bind(e.request_id.as_str())
                    .bind(e.key_id.as_str())
                    .bind(e.project_id.as_str())
                    .bind(e.user_id.as_str())
                    .bind(&*e.model)
                    .bind(e.endpoint.as_str())
                    .bind(e.prompt_tokens)
                    .bind(e.completion_tokens)
                    .bind(e.cost.0)
                    .bind(i64::from(e.status))
                    .bind(e.latency_ms)
                    .bind(e.created_at);
            }
            for row in query.fetch_all(&mut *tx).await? {
                inserted.insert(row.try_get::<String, _>(0)?);
            }
        }
        let daily: Vec<_> =
            rollup::daily_sums(events.iter().filter(|e| inserted.remove(&e.request_id)))
                .into_iter()
                .collect();
        for chunk in statement_chunks(&daily) {
            let sql = rollup::upsert_sql(&self.backend.values(chunk.len(), 9));
            let mut query = sqlx::query(&sql);
            for ((day, project, key, model), sums) in chunk {
                query = query.bind(*day).bind(*project).bind(*key).bind(*model);
                for sum in sums.in_column_order() {
                    query = query.bind(sum);
                }
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn spend_since(&self, owner: SpendOwner<'_>, from: i64) -> Result<Micros> {
        let (sql, id) = match owner {
            // The key and every key below it (delegated keys spend against
            // their makers).
            SpendOwner::Key(k) => (
                "WITH RECURSIVE tree (id) AS (SELECT CAST($1 AS TEXT) \
                 UNION SELECT k.id FROM api_keys k JOIN tree t ON k.parent_key_id = t.id) \
                 SELECT CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT) FROM usage_daily \
                 WHERE key_id IN (SELECT id FROM tree) AND day >= $2",
                k.as_str(),
            ),
            SpendOwner::Project(p) => (
                "SELECT CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT) FROM usage_daily \
                 WHERE project_id = $1 AND day >= $2",
                p.as_str(),
            ),
        };
        Ok(Micros(
            sqlx::query(sql)
                .bind(id)
                .bind(from)
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?,
        ))
    }

    async fn usage(&self, f: &UsageFilter) -> Result<Vec<UsageRow>> {
        if f.projects.is_empty() || f.bucket_seconds <= 0 {
            return Ok(Vec::new());
        }
        let daily = f.bucket_seconds == 86_400;
        let (table, time, requests) = if daily {
            ("usage_daily", "day", "SUM(requests)")
        } else {
            ("usage_ledger", "created_at", "COUNT(*)")
        };
        let mut params = Params::default();
        let mut conditions = vec![format!(
            "project_id IN ({})",
            params.texts(f.projects.iter().map(|p| p.as_str()))
        )];
        if !f.keys.is_empty() {
            conditions.push(format!(
                "key_id IN ({})",
                params.texts(f.keys.iter().map(|k| k.as_str()))
            ));
        }
        if !f.models.is_empty() {
            conditions.push(format!(
                "model IN ({})",
                params.texts(f.models.iter().map(String::as_str))
            ));
        }
        let groups: Vec<&str> = [
            (f.by_project, "project_id"),
            (f.by_key, "key_id"),
            (f.by_model, "model"),
        ]
        .into_iter()
        .filter_map(|(on, col)| on.then_some(col))
        .collect();
        let select_groups: String = groups.iter().map(|g| format!(", {g}")).collect();
        let sql = format!(
            "SELECT CAST(({time} / {w}) * {w} AS BIGINT) AS bucket{select_groups}, \
             CAST({requests} AS BIGINT) AS requests, CAST(SUM(prompt_tokens) AS BIGINT) AS prompt_tokens, \
             CAST(SUM(completion_tokens) AS BIGINT) AS completion_tokens, \
             CAST(SUM(cost_micros) AS BIGINT) AS cost_micros \
             FROM {table} WHERE {} AND {time} >= {from} AND {time} < {to} \
             GROUP BY bucket{select_groups} ORDER BY bucket{select_groups}",
            conditions.join(" AND "),
            w = params.int(f.bucket_seconds),
            from = params.int(f.from),
            to = params.int(f.to),
        );
        let rows = params
            .bind_to(sqlx::query(&sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(UsageRow {
                    bucket_start: r.try_get("bucket")?,
                    project_id: if f.by_project {
                        Some(parse_id(r, "project_id", ProjectId::parse)?)
                    } else {
                        None
                    },
                    key_id: if f.by_key {
                        Some(parse_id(r, "key_id", KeyId::parse)?)
                    } else {
                        None
                    },
                    model: if f.by_model {
                        Some(r.try_get("model")?)
                    } else {
                        None
                    },
                    requests: r.try_get("requests")?,
                    prompt_tokens: r.try_get("prompt_tokens")?,
                    completion_tokens: r.try_get("completion_tokens")?,
                    cost: Micros(r.try_get("cost_micros")?),
                })
            })
            .collect()
    }

    async fn usage_events(
        &self,
        project: &ProjectId,
        from: i64,
        to: i64,
    ) -> Result<Vec<UsageEvent>> {
        let rows = sqlx::query(
            "SELECT * FROM usage_ledger WHERE project_id = $1 AND created_at >= $2 AND created_at < $3 ORDER BY seq",
        )
        .bind(project.as_str())
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(usage_from_row).collect()
    }
}
