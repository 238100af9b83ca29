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

/// A model's price, in micro-dollars: per million input and output tokens
/// and, for the endpoints that bill otherwise, per image, per million
/// characters, per minute of audio and per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Price {
    pub input_per_mtok: Micros,
    pub output_per_mtok: Micros,
    /// Input tokens the upstream served from its prompt cache; `None`
    /// charges them as any input token.
    pub cached_input_per_mtok: Option<Micros>,
    pub per_image: Micros,
    pub per_mchar: Micros,
    pub per_minute: Micros,
    pub per_request: Micros,
}

/// What one call used, in every unit a price can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Measure {
    /// Input tokens, cached ones included.
    pub prompt_tokens: i64,
    /// Output tokens, reasoning ones included.
    pub completion_tokens: i64,
    /// The part of `prompt_tokens` served from the upstream's cache.
    pub cached_tokens: i64,
    pub images: i64,
    /// Characters of text turned into speech.
    pub characters: i64,
    /// Milliseconds of audio transcribed or translated.
    pub audio_ms: i64,
    pub requests: i64,
}

impl Measure {
    /// Input and output tokens only.
    pub fn tokens(prompt_tokens: i64, completion_tokens: i64) -> Measure {
        Measure {
            prompt_tokens,
            completion_tokens,
            ..Measure::default()
        }
    }
}

impl Price {
    /// What `prompt` input and `completion` output tokens cost.
    pub fn cost(&self, prompt: i64, completion: i64) -> Micros {
        self.charge(&Measure::tokens(prompt, completion))
    }

    /// What a call that used `m` costs, rounded up once, at the end, to the
    /// next micro-dollar so that many small calls never cost nothing.
    /// Negative counts count as zero; the sum saturates.
    pub fn charge(&self, m: &Measure) -> Micros {
        // Every term over one denominator: 3,000,000 is the least common
        // multiple of a million (per-million prices) and 60,000 (ms per minute).
        const DENOMINATOR: i128 = 3_000_000;
        let n = |v: i64| i128::from(v.max(0));
        let p = |v: Micros| i128::from(v.0);
        let cached = n(m.cached_tokens).min(n(m.prompt_tokens));
        let cached_price = p(self.cached_input_per_mtok.unwrap_or(self.input_per_mtok));
        // (count, price, scale to the denominator), summed saturating.
        let terms = [
            (n(m.prompt_tokens) - cached, p(self.input_per_mtok), 3),
            (cached, cached_price, 3),
            (n(m.completion_tokens), p(self.output_per_mtok), 3),
            (n(m.characters), p(self.per_mchar), 3),
            (n(m.images), p(self.per_image), DENOMINATOR),
            (n(m.requests), p(self.per_request), DENOMINATOR),
            (n(m.audio_ms), p(self.per_minute), 50),
        ];
        let total = terms.iter().fold(0i128, |sum, &(count, price, scale)| {
            sum.saturating_add(count.saturating_mul(price).saturating_mul(scale))
        });
        let micros = total.saturating_add(DENOMINATOR - 1) / DENOMINATOR;
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
            ..Price::default()
        };
        assert_eq!(p.cost(1_000_000, 0), Micros(150_000));
        assert_eq!(p.cost(1000, 500), Micros(450));
        assert_eq!(p.cost(1, 0), Micros(1));
        assert_eq!(p.cost(0, 0), Micros(0));
        assert_eq!(Price::default().cost(10_000, 10_000), Micros(0));
    }

    #[test]
    fn every_unit_has_its_price() {
        let usd = |v: f64| Micros::from_usd(v).unwrap();
        let p = Price {
            input_per_mtok: usd(2.0),
            output_per_mtok: usd(8.0),
            cached_input_per_mtok: Some(usd(0.5)),
            per_image: usd(0.04),
            per_mchar: usd(15.0),
            per_minute: usd(0.006),
            per_request: usd(0.001),
        };
        // 1M input of which 400k cached: 600k x $2 + 400k x $0.5 = $1.40.
        let cached = Measure {
            prompt_tokens: 1_000_000,
            cached_tokens: 400_000,
            ..Measure::default()
        };
        assert_eq!(p.charge(&cached), usd(1.4));
        // More cached than input (a confused upstream) charges no less than zero.
        let odd = Measure {
            prompt_tokens: 10,
            cached_tokens: 1_000,
            ..Measure::default()
        };
        assert_eq!(p.charge(&odd), Micros(5));
        let images = Measure {
            images: 3,
            ..Measure::default()
        };
        assert_eq!(p.charge(&images), usd(0.12));
        let speech = Measure {
            characters: 1_000,
            ..Measure::default()
        };
        assert_eq!(p.charge(&speech), usd(0.015));
        // 90 s of audio at $0.006 a minute.
        let audio = Measure {
            audio_ms: 90_000,
            ..Measure::default()
        };
        assert_eq!(p.charge(&audio), usd(0.009));
        // 1 ms still costs something.
        let blip = Measure {
            audio_ms: 1,
            ..Measure::default()
        };
        assert_eq!(p.charge(&blip), Micros(1));
        let request = Measure {
            requests: 2,
            ..Measure::default()
        };
        assert_eq!(p.charge(&request), usd(0.002));
        let huge = Measure {
            prompt_tokens: i64::MAX,
            completion_tokens: i64::MAX,
            images: i64::MAX,
            audio_ms: i64::MAX,
            ..Measure::default()
        };
        assert_eq!(p.charge(&huge), Micros(i64::MAX), "saturates");
        let negative = Measure {
            prompt_tokens: -5,
            images: -1,
            ..Measure::default()
        };
        assert_eq!(p.charge(&negative), Micros(0));
        // Without a cached price, cached tokens are input tokens.
        let plain = Price {
            cached_input_per_mtok: None,
            ..p
        };
        assert_eq!(plain.charge(&cached), usd(2.0));
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
