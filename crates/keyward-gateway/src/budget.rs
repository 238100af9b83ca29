//! Monthly budgets per key: the worst-case cost is reserved before a call
//! and settled to the real cost after, so concurrent calls cannot together
//! spend much past the budget (at most what the estimates missed).

use std::sync::{Arc, Mutex};

use keyward_core::{time, Micros};

use crate::limits::Subject;
use crate::meter::Meter;
use async_trait::async_trait;
use keyward_core::SpendOwner;
use keyward_service::{ServiceError, SpendReader};

use crate::table::Table;

/// How long a first budget check waits for the ledger to catch up.
const FLUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Spending in one month: settled costs and reservations still open.
#[derive(Debug, Default)]
struct Month {
    spent: i64,
    reserved: i64,
}

/// Monthly budget state shared by the gateway's handlers. Behind a trait
/// so that a shared (Redis) book can replace the in-process one.
#[async_trait]
pub trait BudgetBook: Send + Sync {
    /// Reserves `worst` against `who`'s `budget` for this month, or says it is spent.
    async fn reserve(
        &self,
        who: &Subject,
        budget: Micros,
        worst: Micros,
    ) -> Result<Result<Box<dyn Reservation>, OverBudget>, SpendUnread>;
}

/// This month's spend could not be read, so no budget can be checked.
#[derive(Debug)]
pub enum SpendUnread {
    /// What is queued for the ledger was not stored in time.
    LedgerBehind,
    /// The database failed.
    Database(ServiceError),
}

impl std::fmt::Display for SpendUnread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpendUnread::LedgerBehind => f.write_str(
                "the usage ledger failed (the usage ledger is behind; this month's spend cannot be read yet)",
            ),
            SpendUnread::Database(e) => e.fmt(f),
        }
    }
}

impl From<ServiceError> for SpendUnread {
    fn from(e: ServiceError) -> Self {
        SpendUnread::Database(e)
    }
}

/// An open reservation: settle it with the real cost; dropped unsettled,
/// it is released.
pub trait Reservation: Send + Sync {
    fn settle(&mut self, cost: Micros);
}

/// The in-process book: this month's spend per key and project, read from
/// the daily roll-up on first use and kept in memory after.
///
/// The first read waits for the ledger writer to store what is queued, so
/// calls finished before a budget was set count against it; calls still in
/// flight at that moment were never reserved and are not counted.
pub struct LocalBudgets {
    spend: Arc<dyn SpendReader>,
    meter: Meter,
    /// This month's spend per subject, keyed by the month's first second.
    months: Table<(Subject, i64), Mutex<Month>>,
}

struct LocalReservation {
    month: Arc<Mutex<Month>>,
    amount: i64,
    settled: bool,
}

/// The budget is spent.
#[derive(Debug)]
pub struct OverBudget {
    pub budget: Micros,
    pub spent: Micros,
}

impl LocalBudgets {
    pub fn new(spend: Arc<dyn SpendReader>, meter: Meter) -> Self {
        LocalBudgets {
            spend,
            meter,
            // A past month's entry is never read again.
            months: Table::new(|&(_, from), _| from < time::month_start(time::now_unix())),
        }
    }
}

#[async_trait]
impl BudgetBook for LocalBudgets {
    async fn reserve(
        &self,
        who: &Subject,
        budget: Micros,
        worst: Micros,
    ) -> Result<Result<Box<dyn Reservation>, OverBudget>, SpendUnread> {
        let from = time::month_start(time::now_unix());
        let key = (who.clone(), from);
        let month = match self.months.get(&key) {
            Some(m) => m,
            None => {
                // Bounded: with the database down the flush would wait for
                // it, and so would this call. A spend read without what is
                // still queued could let the key overspend, so the call is
                // refused as unavailable instead.
                if tokio::time::timeout(FLUSH_WAIT, self.meter.flush())
                    .await
                    .is_err()
                {
                    return Err(SpendUnread::LedgerBehind);
                }
                let spent = match who {
                    Subject::Key(k) => self.spend.spend_since(SpendOwner::Key(k), from).await?,
                    Subject::Project(p) => {
                        self.spend.spend_since(SpendOwner::Project(p), from).await?
                    }
                    Subject::Ip(_) => Micros(0),
                };
                // Concurrent first calls each read the spend; the first
                // stored is kept and every call reserves against it.
                self.months.insert_unless_present(
                    &key,
                    Mutex::new(Month {
                        spent: spent.0,
                        reserved: 0,
                    }),
                )
            }
        };
        // Whatever a request asks, a reservation never holds more than the
        // whole budget and a micro-dollar: enough to stop every other call,
        // and small enough that sums of reservations cannot overflow.
        let worst = worst.0.clamp(0, budget.0.saturating_add(1));
        let mut m = month.lock().unwrap_or_else(|e| e.into_inner());
        let used = m.spent.saturating_add(m.reserved);
        // A call fits when its worst case does; when nothing else is in
        // flight, one call may also use a remainder smaller than its worst
        // case, so a budget can be overshot by at most one call's cost.
        let fits = used.saturating_add(worst) <= budget.0;
        let last_call = used < budget.0 && m.reserved == 0;
        if !(fits || last_call) {
            return Ok(Err(OverBudget {
                budget,
                spent: Micros(m.spent),
            }));
        }
        m.reserved += worst;
        drop(m);
        Ok(Ok(Box::new(LocalReservation {
            month,
            amount: worst,
            settled: false,
        })))
    }
}

impl Reservation for LocalReservation {
    /// Replaces the reservation with what the call really cost.
    fn settle(&mut self, cost: Micros) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        let mut m = self.month.lock().unwrap_or_else(|e| e.into_inner());
        m.reserved -= self.amount;
        m.spent = m.spent.saturating_add(cost.0.max(0));
    }
}

impl Drop for LocalReservation {
    /// A call that never reached the ledger costs nothing.
    fn drop(&mut self) {
        self.settle(Micros(0));
    }
}
