//! kombu's priority buckets for virtual transports.

/// Priority buckets as kombu's virtual transports use them (`priority_steps = [0, 3, 6, 9]`);
/// a lower number is served first, as on Redis.
pub const PRIORITY_STEPS: [u8; 4] = [0, 3, 6, 9];

/// The bucket index for a message priority (0–9, clamped).
pub fn priority_bucket(priority: u8) -> usize {
    PRIORITY_STEPS.iter().rposition(|s| *s <= priority.min(9)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_map_to_kombus_buckets() {
        let b: Vec<usize> = (0..=10).map(priority_bucket).collect();
        assert_eq!(b, [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3]);
    }
}
