//! Owners of upstream objects (responses, files, batches).

use keyward_core::{ObjectKind, ObjectQuery, OwnedObject};

use super::*;

fn object_from_row(r: &AnyRow) -> Result<OwnedObject> {
    let kind: String = r.try_get("kind")?;
    Ok(OwnedObject {
        kind: ObjectKind::parse(&kind).ok_or_else(|| corrupt(format!("kind: {kind}")))?,
        id: r.try_get("object_id")?,
        project_id: parse_id(r, "project_id", ProjectId::parse)?,
        key_id: parse_id(r, "key_id", KeyId::parse)?,
        owner_id: parse_id(r, "owner_id", UserId::parse)?,
        upstream: r.try_get("upstream")?,
        model: r.try_get("model")?,
        created_at: r.try_get("created_at")?,
        purpose: r.try_get("purpose")?,
        parent_id: r.try_get("parent_id")?,
        snapshot: r.try_get("snapshot")?,
        items: r.try_get("items")?,
        settled: r.try_get::<i64, _>("settled")? != 0,
    })
}

#[async_trait]
impl ObjectStore for SqlStore {
    async fn insert_object(&self, o: &OwnedObject) -> Result<bool> {
        Ok(sqlx::query(
            "INSERT INTO owned_objects (kind, object_id, project_id, key_id, owner_id, upstream, \
             model, created_at, purpose, parent_id, snapshot, items, settled) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (kind, object_id) DO NOTHING",
        )
        .bind(o.kind.as_str())
        .bind(o.id.as_str())
        .bind(o.project_id.as_str())
        .bind(o.key_id.as_str())
        .bind(o.owner_id.as_str())
        .bind(o.upstream.as_str())
        .bind(o.model.as_deref())
        .bind(o.created_at)
        .bind(o.purpose.as_deref())
        .bind(o.parent_id.as_deref())
        .bind(o.snapshot.as_deref())
        .bind(o.items.as_deref())
        .bind(i64::from(o.settled))
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    async fn object(&self, kind: ObjectKind, id: &str) -> Result<Option<OwnedObject>> {
        sqlx::query("SELECT * FROM owned_objects WHERE kind = $1 AND object_id = $2")
            .bind(kind.as_str())
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(object_from_row)
            .transpose()
    }

    async fn update_object_snapshot(
        &self,
        kind: ObjectKind,
        id: &str,
        snapshot: &str,
    ) -> Result<()> {
        sqlx::query("UPDATE owned_objects SET snapshot = $1 WHERE kind = $2 AND object_id = $3")
            .bind(snapshot)
            .bind(kind.as_str())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_object(&self, kind: ObjectKind, id: &str) -> Result<bool> {
        Ok(
            sqlx::query("DELETE FROM owned_objects WHERE kind = $1 AND object_id = $2")
                .bind(kind.as_str())
                .bind(id)
                .execute(&self.pool)
                .await?
                .rows_affected()
                == 1,
        )
    }

    async fn settle_object(&self, kind: ObjectKind, id: &str) -> Result<bool> {
        Ok(sqlx::query(
            "UPDATE owned_objects SET settled = 1 WHERE kind = $1 AND object_id = $2 AND settled = 0",
        )
        .bind(kind.as_str())
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    async fn list_objects(&self, q: &ObjectQuery<'_>) -> Result<Listed<OwnedObject>> {
        let mut params = Params::default();
        let mut sql = format!(
            "SELECT * FROM owned_objects WHERE project_id = {} AND kind = {}",
            params.text(q.project_id.as_str()),
            params.text(q.kind.as_str())
        );
        if let Some(purpose) = q.purpose {
            sql += &format!(" AND purpose = {}", params.text(purpose));
        }
        let (beyond, order) = if q.newest_first {
            ("<", "DESC")
        } else {
            (">", "ASC")
        };
        if let Some(after) = q.after {
            // The cursor must be one of this list's own objects: another
            // project's id is as unknown as a made-up one.
            let cursor = self
                .object(q.kind, after)
                .await?
                .filter(|o| &o.project_id == q.project_id)
                .ok_or(StoreError::UnknownCursor)?;
            let at = params.int(cursor.created_at);
            let at_again = params.int(cursor.created_at);
            let id = params.text(&cursor.id);
            sql += &format!(
                " AND (created_at {beyond} {at} OR (created_at = {at_again} AND object_id {beyond} {id}))"
            );
        }
        sql += &format!(
            " ORDER BY created_at {order}, object_id {order} LIMIT {}",
            params.int(i64::from(q.limit) + 1)
        );
        let rows = params
            .bind_to(sqlx::query(&sql))
            .fetch_all(&self.pool)
            .await?;
        let items = rows
            .iter()
            .map(object_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(listed(items, q.limit))
    }
}
