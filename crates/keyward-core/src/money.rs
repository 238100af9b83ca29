//! Money as integer micro-dollars (1 USD = 1,000,000), so that sums are exact.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The largest amount accepted from outside: one billion dollars.
const MAX_USD: f64 = 1e9;

/// An amount of US dollars in millionths.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Micros(pub i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be a number of US dollars from 0 to 1000000000")]
pub struct MoneyError;

impl Micros {
    /// Converts a dollar amount given by a user, rounding to the nearest micro-dollar.
    pub fn from_usd(usd: f64) -> Result<Self, MoneyError> {
        if !usd.is_finite() || !(0.0..=MAX_USD).contains(&usd) {
            return Err(MoneyError);
        }
        Ok(Micros((usd * 1e6).round() as i64))
    }

    pub fn to_usd(self) -> f64 {
        self.0 as f64 / 1e6
    }
}

impl fmt::Debug for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${:.6}", self.to_usd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_and_rejects() {
        assert_eq!(Micros::from_usd(12.5).unwrap(), Micros(12_500_000));
        assert_eq!(Micros::from_usd(0.0000014).unwrap(), Micros(1));
        assert_eq!(Micros::from_usd(12.5).unwrap().to_usd(), 12.5);
        assert!(Micros::from_usd(-1.0).is_err());
        assert!(Micros::from_usd(f64::NAN).is_err());
        assert!(Micros::from_usd(2e9).is_err());
    }
}
