//! Turns key records into API objects, looking each owner up once per response.

use std::collections::HashMap;

use keyward_core::KeyRecord;
use keyward_service::{ServiceError, Services};

use super::objects::{KeyObject, Owner};

/// A page of keys as the API's list envelope.
pub async fn key_list(
    services: &Services,
    listed: keyward_core::Listed<KeyRecord>,
) -> Result<super::objects::List<KeyObject>, ServiceError> {
    let has_more = listed.has_more;
    let items = keys(services, listed.items).await?;
    Ok(super::objects::List::new(
        keyward_core::Listed { items, has_more },
        |k| k.id.clone(),
        |k| k,
    ))
}

pub async fn keys(
    services: &Services,
    keys: Vec<KeyRecord>,
) -> Result<Vec<KeyObject>, ServiceError> {
    let mut owners: HashMap<(String, Option<String>), Owner> = HashMap::new();
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let cache_key = (
            key.owner_id.to_string(),
            key.project_id.as_ref().map(ToString::to_string),
        );
        let owner = match owners.get(&cache_key) {
            Some(o) => o.clone(),
            None => {
                let o = owner(services, &key).await?;
                owners.insert(cache_key, o.clone());
                o
            }
        };
        out.push(KeyObject::new(key, owner));
    }
    Ok(out)
}

pub async fn key(services: &Services, key: KeyRecord) -> Result<KeyObject, ServiceError> {
    let owner = owner(services, &key).await?;
    Ok(KeyObject::new(key, owner))
}

async fn owner(services: &Services, key: &KeyRecord) -> Result<Owner, ServiceError> {
    Ok(match services.key_owner(key).await? {
        Some((user, role)) => Owner::of(Some(user), role),
        None => Owner::of(None, ""),
    })
}

/// A just-created or rotated key with its secret. Infallible: the key is
/// committed, and its secret exists nowhere else, so a failure to look up
/// its owner for display must not lose it.
pub async fn created_object(
    services: &Services,
    created: keyward_service::CreatedKey,
) -> super::objects::CreatedKeyObject {
    let value = created.secret.expose().to_owned();
    let owner = owner(services, &created.key).await.unwrap_or_else(|e| {
        tracing::warn!(key = %created.key.id, error = %e, "cannot look up a new key's owner; answering without it");
        Owner::of(None, "")
    });
    super::objects::CreatedKeyObject {
        key: KeyObject::new(created.key, owner),
        value,
    }
}

/// A just-created or rotated key with its secret, sent with
/// `Cache-Control: no-store` so no cache keeps it.
pub async fn created(
    services: &Services,
    created: keyward_service::CreatedKey,
) -> Result<axum::response::Response, ServiceError> {
    use axum::http::{header, HeaderValue};
    use axum::response::IntoResponse;

    let object = created_object(services, created).await;
    let mut response = axum::Json(object).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
