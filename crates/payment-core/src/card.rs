//! Card numbers, the amounts charged to them, and the policy that declines some of them.

use std::fmt;

/// Why text is not a card number. A client error: the card was never tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CardError {
    /// Something other than digits (spaces and hyphens between them are allowed).
    #[error("a card number holds only digits, optionally grouped by spaces or hyphens")]
    Characters,
    /// Fewer than 12 or more than 19 digits.
    #[error("a card number has 12 to 19 digits, this one has {0}")]
    Length(usize),
    /// The digits fail the Luhn check (a typo).
    #[error("the card number's check digit is wrong")]
    CheckDigit,
}

/// A card number that passed the format and Luhn checks. Its `Debug` shows only the last four
/// digits, so it never lands whole in a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct CardNumber(String);

impl CardNumber {
    /// Checks a card number: 12 to 19 digits, optionally grouped by spaces or hyphens, with a
    /// valid Luhn check digit.
    pub fn parse(text: &str) -> Result<Self, CardError> {
        let digits: String = text
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-'))
            .collect();
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(CardError::Characters);
        }
        if !(12..=19).contains(&digits.len()) {
            return Err(CardError::Length(digits.len()));
        }
        if !luhn_valid(&digits) {
            return Err(CardError::CheckDigit);
        }
        Ok(Self(digits))
    }

    /// The last four digits, the part of a card that is kept and shown.
    pub fn last4(&self) -> &str {
        &self.0[self.0.len() - 4..]
    }
}

impl fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardNumber(**** {})", self.last4())
    }
}

/// The Luhn (mod 10) check over ASCII digits.
fn luhn_valid(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(position, byte)| {
            let digit = u32::from(byte - b'0');
            if position % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// An amount to charge: a positive number of cents that SQLite can store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(u64);

/// Why a number is not an amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an amount is 1 to {max} cents, got {0}", max = i64::MAX)]
pub struct AmountError(pub u64);

impl Amount {
    /// Checks an amount in cents.
    pub fn new(cents: u64) -> Result<Self, AmountError> {
        if cents == 0 || i64::try_from(cents).is_err() {
            return Err(AmountError(cents));
        }
        Ok(Self(cents))
    }

    /// The amount in cents.
    pub fn cents(self) -> u64 {
        self.0
    }
}

/// Why an authorization was declined. Deterministic, so tests can force a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeclineReason {
    /// Test card `4000 0000 0000 0002`.
    CardDeclined,
    /// Test card `4000 0000 0000 9995`.
    InsufficientFunds,
    /// Test card `4000 0000 0000 9987`.
    LostCard,
    /// Test card `4000 0000 0000 9979`.
    StolenCard,
    /// Test card `4000 0000 0000 0069`.
    ExpiredCard,
    /// The amount is over the policy's limit.
    AmountOverLimit,
}

/// The test cards that are always declined (Stripe's), and why.
const DECLINED_CARDS: [(&str, DeclineReason); 5] = [
    ("4000000000000002", DeclineReason::CardDeclined),
    ("4000000000009995", DeclineReason::InsufficientFunds),
    ("4000000000009987", DeclineReason::LostCard),
    ("4000000000009979", DeclineReason::StolenCard),
    ("4000000000000069", DeclineReason::ExpiredCard),
];

impl DeclineReason {
    /// Every reason.
    const ALL: [DeclineReason; 6] = [
        Self::CardDeclined,
        Self::InsufficientFunds,
        Self::LostCard,
        Self::StolenCard,
        Self::ExpiredCard,
        Self::AmountOverLimit,
    ];

    /// The reason's code, as stored and shown (`card_declined`, `amount_over_limit`, ...).
    pub fn code(self) -> &'static str {
        match self {
            Self::CardDeclined => "card_declined",
            Self::InsufficientFunds => "insufficient_funds",
            Self::LostCard => "lost_card",
            Self::StolenCard => "stolen_card",
            Self::ExpiredCard => "expired_card",
            Self::AmountOverLimit => "amount_over_limit",
        }
    }

    /// The reason with this code.
    pub(crate) fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.code() == code)
    }
}

impl fmt::Display for DeclineReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// What the payment service accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaymentPolicy {
    /// The largest amount one authorization may be for.
    pub limit: Amount,
}

impl Default for PaymentPolicy {
    /// A limit of 1,000,000 cents (10,000.00).
    fn default() -> Self {
        Self {
            limit: Amount(1_000_000),
        }
    }
}

impl PaymentPolicy {
    /// Whether an authorization of `amount` on `card` is declined, and why: the declining test
    /// cards first, then the limit.
    pub fn decline(&self, amount: Amount, card: &CardNumber) -> Option<DeclineReason> {
        DECLINED_CARDS
            .iter()
            .find(|(number, _)| *number == card.0)
            .map(|(_, reason)| *reason)
            .or((amount > self.limit).then_some(DeclineReason::AmountOverLimit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_well_formed_card_numbers() {
        for text in [
            "4242424242424242",
            "4242 4242 4242 4242",
            " 4242-4242-4242-4242 ",
            "378282246310005",     // 15 digits (Amex)
            "6011000990139424",    // Discover
            "4222222222222",       // 13 digits
            "6250941006528599",    // UnionPay
            "6205500000000000004", // 19 digits
        ] {
            assert!(CardNumber::parse(text).is_ok(), "{text}");
        }
        let card = CardNumber::parse("4242 4242 4242 4242").unwrap();
        assert_eq!(card.last4(), "4242");
        assert_eq!(format!("{card:?}"), "CardNumber(**** 4242)");
    }

    #[test]
    fn refuses_malformed_card_numbers() {
        assert_eq!(CardNumber::parse(""), Err(CardError::Characters));
        assert_eq!(
            CardNumber::parse("4242x42424242424"),
            Err(CardError::Characters)
        );
        assert_eq!(
            CardNumber::parse("４２４２４２４２４２４２"),
            Err(CardError::Characters)
        );
        assert_eq!(CardNumber::parse("42424242426"), Err(CardError::Length(11)));
        assert_eq!(
            CardNumber::parse("42424242424242424242"),
            Err(CardError::Length(20))
        );
        assert_eq!(
            CardNumber::parse("4242424242424241"),
            Err(CardError::CheckDigit)
        );
    }

    #[test]
    fn every_declining_test_card_is_a_valid_number() {
        for (number, _) in DECLINED_CARDS {
            assert!(CardNumber::parse(number).is_ok(), "{number}");
        }
    }

    #[test]
    fn declines_test_cards_and_amounts_over_the_limit() {
        let policy = PaymentPolicy::default();
        let good = CardNumber::parse("4242424242424242").unwrap();
        let amount = |cents| Amount::new(cents).unwrap();
        assert_eq!(policy.decline(amount(1_000_000), &good), None);
        assert_eq!(
            policy.decline(amount(1_000_001), &good),
            Some(DeclineReason::AmountOverLimit)
        );
        for (number, reason) in DECLINED_CARDS {
            let card = CardNumber::parse(number).unwrap();
            assert_eq!(policy.decline(amount(100), &card), Some(reason));
            // The card's own reason comes first.
            assert_eq!(policy.decline(amount(5_000_000), &card), Some(reason));
        }
        let strict = PaymentPolicy { limit: amount(50) };
        assert_eq!(
            strict.decline(amount(51), &good),
            Some(DeclineReason::AmountOverLimit)
        );
    }

    #[test]
    fn amounts_are_positive_and_fit_sqlite() {
        assert_eq!(Amount::new(0), Err(AmountError(0)));
        assert_eq!(Amount::new(1).unwrap().cents(), 1);
        assert!(Amount::new(i64::MAX as u64).is_ok());
        assert_eq!(
            Amount::new(i64::MAX as u64 + 1),
            Err(AmountError(i64::MAX as u64 + 1))
        );
    }

    #[test]
    fn decline_codes_read_back() {
        for reason in DeclineReason::ALL {
            assert_eq!(DeclineReason::from_code(reason.code()), Some(reason));
        }
        assert_eq!(DeclineReason::from_code("nope"), None);
    }
}
