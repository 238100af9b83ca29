//! Usage that arrives after the call that caused it: a background
//! response's, seen finished on a later retrieve, and a batch's, seen
//! completed. Recorded once per object: the object's row is marked settled
//! first, and the ledger row's request id is the object's id, which the
//! ledger never stores twice. The cost also goes into this process's
//! budget book for the creator's key and project, so later calls see it
//! (keys above a delegated creator learn of it when their month is next
//! read from the ledger).

use keyward_core::time::now_unix;
use keyward_core::{Measure, Micros, OwnedObject, UsageEvent};

use crate::limits::Subject;

use crate::request::Endpoint;
use crate::sse::Usage;
use crate::Gateway;

/// Records `usage` of `object` under `endpoint`, priced as the model the
/// object was created for, else as `model`, the one its upstream names
/// (nothing when no configured model matches),
/// billed to the object's creator. Does nothing if it was recorded before.
pub(crate) async fn record(
    gw: &Gateway,
    object: &OwnedObject,
    endpoint: Endpoint,
    model: &str,
    usage: Usage,
) {
    let Ok(slot) = gw.meter.reserve().await else {
        tracing::warn!(object = %object.id, "the ledger is full: usage seen later is recorded at the next look");
        return;
    };
    match gw.objects.settle(object.kind, &object.id).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(error = %e, object = %object.id, "could not mark usage as recorded; it is recorded at the next look");
            return;
        }
    }
    // The model the creator asked for, when it was recorded; else the one
    // the upstream names, by Keyward's id or by the upstream's own name.
    let route = match &object.model {
        Some(id) => gw.catalog.route(id, |_| true),
        None => gw
            .catalog
            .route(model, |_| true)
            .or_else(|| gw.catalog.route_by_upstream_name(&object.upstream, model)),
    };
    let price = route.map(|r| r.price).unwrap_or_default();
    let cost = price.charge(&Measure {
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        cached_tokens: usage.cached_tokens,
        ..Measure::default()
    });
    charge_budgets(gw, object, cost).await;
    gw.meter.record(
        slot,
        UsageEvent {
            request_id: object.id.clone(),
            key_id: object.key_id.clone(),
            project_id: object.project_id.clone(),
            user_id: object.owner_id.clone(),
            model: route.map_or_else(|| model.into(), |r| r.id.clone()),
            endpoint,
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            cost,
            status: 200,
            latency_ms: 0,
            created_at: now_unix(),
        },
    );
}

/// Adds `cost` to this month's spend of the object's key and project in
/// the budget book (no limit applies: the spend has happened).
async fn charge_budgets(gw: &Gateway, object: &OwnedObject, cost: Micros) {
    for who in [
        Subject::Key(object.key_id.clone()),
        Subject::Project(object.project_id.clone()),
    ] {
        match gw.budgets.reserve(&who, Micros(i64::MAX), Micros(0)).await {
            Ok(Ok(mut reservation)) => reservation.settle(cost),
            Ok(Err(_)) => {}
            Err(e) => {
                tracing::warn!(error = %e, object = %object.id, "a budget could not be charged for usage seen later; it counts once the month is read again");
            }
        }
    }
}
