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

    /// `$12.50`, or `$0.000012` for amounts under a cent.
    pub fn format_usd(self) -> String {
        if self.0.abs() >= 10_000 || self.0 == 0 {
            format!("${:.2}", self.to_usd())
        } else {
            format!("${:.6}", self.to_usd())
        }
    }
}

impl fmt::Debug for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${:.6}", self.to_usd())
    }
}

/// A model's price: micro-dollars per million input and output tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Price {
    pub input_per_mtok: Micros,
    pub output_per_mtok: Micros,
}

impl Price {
    /// What `prompt` input and `completion` output tokens cost, rounded up
    /// to the next micro-dollar so that many small calls never cost nothing.
    pub fn cost(&self, prompt: i64, completion: i64) -> Micros {
        let total = i128::from(prompt.max(0)) * i128::from(self.input_per_mtok.0)
            + i128::from(completion.max(0)) * i128::from(self.output_per_mtok.0);
        let micros = (total + 999_999) / 1_000_000;
        Micros(i64::try_from(micros).unwrap_or(i64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_round_up_to_the_micro_dollar() {
        // gpt-4o-mini: $0.15 in, $0.60 out per million tokens.
        let p = Price {
            input_per_mtok: Micros::from_usd(0.15).unwrap(),
            output_per_mtok: Micros::from_usd(0.60).unwrap(),
        };
        assert_eq!(p.cost(1_000_000, 0), Micros(150_000));
        assert_eq!(p.cost(1000, 500), Micros(450));
        assert_eq!(p.cost(1, 0), Micros(1));
        assert_eq!(p.cost(0, 0), Micros(0));
        assert_eq!(Price::default().cost(10_000, 10_000), Micros(0));
    }

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
