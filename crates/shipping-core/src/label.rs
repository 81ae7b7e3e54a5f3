//! Where a shipment goes, its tracking number and its label, all derived deterministically.

use orders_core::{CustomerName, LineItem, OrderId, TextError, Timestamp, clean_text};
use sha2::{Digest, Sha256};
use std::fmt;

/// The secret a deployment derives its tracking numbers with: the same seed and order id give
/// the same tracking number, and without the seed they cannot be guessed from order ids.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TrackingSeed(pub u64);

impl fmt::Debug for TrackingSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TrackingSeed(..)")
    }
}

/// A tracking number: `OY`, 18 digits derived from the seed and the order id, and a Luhn
/// check digit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrackingNumber(String);

impl TrackingNumber {
    /// The prefix of every tracking number.
    const PREFIX: &'static str = "OY";

    /// The order's tracking number under `seed`.
    pub(crate) fn derive(seed: TrackingSeed, order_id: &OrderId) -> Self {
        let digest = Sha256::new()
            .chain_update(b"orderly tracking number\0")
            .chain_update(seed.0.to_be_bytes())
            .chain_update(order_id.as_str().as_bytes())
            .finalize();
        let mut first = [0; 8];
        first.copy_from_slice(&digest[..8]);
        let serial = format!(
            "{:018}",
            u64::from_be_bytes(first) % 1_000_000_000_000_000_000
        );
        let check = luhn_check_digit(&serial);
        Self(format!("{}{serial}{check}", Self::PREFIX))
    }

    /// A tracking number read back from storage, if it has the right form.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let digits = text.strip_prefix(Self::PREFIX)?;
        let (serial, check) = digits.split_at_checked(18)?;
        (serial.bytes().all(|b| b.is_ascii_digit())
            && check.len() == 1
            && check == luhn_check_digit(serial).to_string())
        .then(|| Self(text.to_owned()))
    }

    /// The tracking number as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TrackingNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The digit that makes `digits` followed by it pass the Luhn check.
fn luhn_check_digit(digits: &str) -> u32 {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(position, byte)| {
            let digit = u32::from(byte - b'0');
            // Counting from the check digit's right neighbour, every other digit doubles.
            if position % 2 == 0 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

/// A postal address, as one line: 1 to 200 characters after trimming, nothing hidden.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address(String);

impl Address {
    /// The longest address accepted, in characters.
    pub const MAX_CHARS: usize = 200;

    /// Checks and trims an address.
    pub fn new(text: &str) -> Result<Self, TextError> {
        clean_text(text, Self::MAX_CHARS).map(Self)
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a shipment goes, as far as the order says: both parts are optional (the seeds' orders
/// carry at most a customer name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ShipTo {
    /// Who receives it.
    pub recipient: Option<CustomerName>,
    /// Where.
    pub address: Option<Address>,
}

/// The label printed for a shipment: plain text naming the tracking number, the order, the
/// destination, the contents and when it was created.
pub(crate) fn render_label(
    tracking_number: &TrackingNumber,
    order_id: &OrderId,
    lines: &[LineItem],
    ship_to: &ShipTo,
    created_at: Timestamp,
) -> String {
    let destination: Vec<&str> = [
        ship_to.recipient.as_ref().map(CustomerName::as_str),
        ship_to.address.as_ref().map(Address::as_str),
    ]
    .into_iter()
    .flatten()
    .collect();
    let destination = if destination.is_empty() {
        "(no recipient or address given)".to_owned()
    } else {
        destination.join(", ")
    };
    let contents: Vec<String> = lines
        .iter()
        .map(|line| format!("{} x {}", line.quantity.get(), line.product.as_str()))
        .collect();
    format!(
        "ORDERLY SHIPPING LABEL\nTracking: {tracking_number}\nOrder: {order_id}\nShip to: \
        {destination}\nContents: {}\nCreated: {created_at}\n",
        contents.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use orders_core::{ProductName, Quantity};

    fn order(id: &str) -> OrderId {
        OrderId::parse(id).unwrap()
    }

    #[test]
    fn tracking_numbers_are_derived_from_the_seed_and_the_order() {
        let number = TrackingNumber::derive(TrackingSeed(7), &order("o1"));
        assert_eq!(
            number,
            TrackingNumber::derive(TrackingSeed(7), &order("o1"))
        );
        assert_ne!(
            number,
            TrackingNumber::derive(TrackingSeed(8), &order("o1"))
        );
        assert_ne!(
            number,
            TrackingNumber::derive(TrackingSeed(7), &order("o2"))
        );
        let text = number.as_str();
        assert_eq!(text.len(), 21);
        assert!(text.starts_with("OY"));
        assert!(text[2..].bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(TrackingNumber::parse(text), Some(number.clone()));
    }

    #[test]
    fn the_check_digit_catches_a_typo() {
        let number = TrackingNumber::derive(TrackingSeed(1), &order("o1")).to_string();
        let mut typo = number.clone().into_bytes();
        typo[5] = if typo[5] == b'9' { b'0' } else { typo[5] + 1 };
        assert_eq!(
            TrackingNumber::parse(&String::from_utf8(typo).unwrap()),
            None
        );
        assert_eq!(TrackingNumber::parse(&number[..20]), None);
        assert_eq!(TrackingNumber::parse(&number.replace("OY", "XX")), None);
        // The Luhn digit of a well-known number.
        assert_eq!(luhn_check_digit("7992739871"), 3);
    }

    #[test]
    fn addresses_are_trimmed_bounded_and_visible() {
        assert_eq!(
            Address::new("  1 Main St, Springfield ").unwrap().as_str(),
            "1 Main St, Springfield"
        );
        assert_eq!(Address::new(" "), Err(TextError::Empty));
        assert_eq!(
            Address::new(&"x".repeat(201)),
            Err(TextError::TooLong { max: 200 })
        );
        assert!(matches!(
            Address::new("1 Main\u{202E}St"),
            Err(TextError::Hidden { .. })
        ));
    }

    #[test]
    fn the_label_names_everything_the_carrier_needs() {
        let tracking = TrackingNumber::derive(TrackingSeed(3), &order("o1"));
        let lines = [LineItem {
            product: ProductName::new("Vaccine X").unwrap(),
            quantity: Quantity::new(2).unwrap(),
        }];
        let ship_to = ShipTo {
            recipient: Some(CustomerName::new("Ada").unwrap()),
            address: Some(Address::new("1 Main St").unwrap()),
        };
        let label = render_label(&tracking, &order("o1"), &lines, &ship_to, Timestamp(0));
        assert_eq!(
            label,
            format!(
                "ORDERLY SHIPPING LABEL\nTracking: {tracking}\nOrder: o1\nShip to: Ada, 1 Main \
                St\nContents: 2 x Vaccine X\nCreated: 1970-01-01T00:00:00.000Z\n"
            )
        );
        let anonymous = render_label(
            &tracking,
            &order("o1"),
            &lines,
            &ShipTo::default(),
            Timestamp(0),
        );
        assert!(anonymous.contains("Ship to: (no recipient or address given)\n"));
    }
}
