//! Which of the tokenizer's cached `int` objects an object is, from its address alone.
//!
//! `encode` builds its result lists from one `int` object per id, made once and held by the
//! tokenizer (`PyTokenizer::ints`). Decoding such a list read each item's value through
//! `PyLong_AsLongAndOverflow` after a look at its type, a call and a read of the object (32,000
//! objects spread over a megabyte, a cache miss for many ids). An item whose address is that of
//! one of the cached objects *is* that object (both are alive: the list holds one reference, the
//! tokenizer another; two live objects never share an address), so its value is the id the
//! object was made for, with no call and without touching the object. Any other item (an `int`
//! made elsewhere, anything that is not an `int`) is not found here and is read as before.
//!
//! The addresses are looked up in a table of 32-byte slots over the span of addresses the cached
//! objects take (at most two spans, for objects made in two places, such as CPython's static small
//! ints and the heap): a slot holds the id and the address's low 5 bits, so a hit is an exact
//! match of the whole address. Two cached objects in one slot (not seen with CPython's
//! allocators, which place 28-byte ints 32 bytes apart) leave the slot empty: both are then read
//! the general way, as are objects outside the two spans. The tables are zeroed memory, most of
//! it never touched (so never made resident), of at most [`MAX_SPAN`] / 8 bytes each. Nothing here
//! depends on how CPython lays out its objects; only the speed does on where its allocator puts
//! them.

/// Bits of an address below its slot.
const SLOT_BITS: u32 = 5;
/// The low bits of an address a slot keeps.
const LOW: usize = (1 << SLOT_BITS) - 1;
/// Addresses a table spans, at most (a table of 8 MB, mostly untouched).
const MAX_SPAN: usize = 64 << 20;

pub struct IntIds {
    /// One or two spans, the one with the most objects first.
    spans: Vec<Span>,
}

struct Span {
    /// The lowest address of the span.
    base: usize,
    /// One per 32 bytes from `base` on: 0 for none, else `(id + 1) << SLOT_BITS | (address & LOW)`.
    slots: Vec<u32>,
}

impl IntIds {
    /// The table of `addresses[id]` (the cached objects' addresses, by id); `None` when the ids
    /// do not fit a slot or no span of addresses holds a tenth of them.
    pub fn new(addresses: &[usize]) -> Option<Self> {
        if addresses.len() >= (1 << (32 - SLOT_BITS)) - 1 {
            return None;
        }
        let mut sorted = addresses.to_vec();
        sorted.sort_unstable();
        // The addresses in runs of at most `MAX_SPAN`, each from the lowest address not in the
        // runs before: (first, last, count).
        let mut runs: Vec<(usize, usize, usize)> = Vec::new();
        for &a in &sorted {
            match runs.last_mut() {
                Some(run) if a - run.0 < MAX_SPAN => {
                    run.1 = a;
                    run.2 += 1;
                }
                _ => runs.push((a, a, 1)),
            }
        }
        runs.sort_by_key(|run| std::cmp::Reverse(run.2));
        let spans: Vec<Span> = runs
            .iter()
            .take(2)
            .filter(|run| run.2 >= addresses.len() / 10)
            .map(|run| Span {
                base: run.0,
                slots: vec![0; ((run.1 - run.0) >> SLOT_BITS) + 1],
            })
            .collect();
        if spans.is_empty() {
            return None;
        }
        let mut table = IntIds { spans };
        let mut shared = Vec::new();
        for (id, &address) in addresses.iter().enumerate() {
            let value = ((id as u32 + 1) << SLOT_BITS) | (address & LOW) as u32;
            for (n, span) in table.spans.iter_mut().enumerate() {
                if let Some(slot) = span
                    .slots
                    .get_mut(address.wrapping_sub(span.base) >> SLOT_BITS)
                {
                    if *slot != 0 {
                        shared.push((n, address));
                    }
                    *slot = value;
                    break;
                }
            }
        }
        for (n, address) in shared {
            let span = &mut table.spans[n];
            span.slots[(address - span.base) >> SLOT_BITS] = 0;
        }
        Some(table)
    }

    /// The id whose cached object is at `address`, if one is.
    #[inline(always)]
    pub fn id_at(&self, address: usize) -> Option<u32> {
        for span in &self.spans {
            if let Some(&value) = span.slots.get(address.wrapping_sub(span.base) >> SLOT_BITS) {
                let hit = value != 0 && (value as usize & LOW) == (address & LOW);
                return hit.then(|| (value >> SLOT_BITS) - 1);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_exactly_the_addresses_it_was_given() {
        // Runs 32 bytes apart over several pages, a second region far away, and two addresses
        // in one slot (neither found).
        let mut addresses: Vec<usize> = (0..300).map(|i| 0x7f00_0000_0010 + 32 * i).collect();
        addresses.extend((0..40).map(|i| 0x5555_0000_0008 + 48 * i));
        addresses.push(0x6000_0000_0100);
        addresses.push(0x6000_0000_0108);
        let table = IntIds::new(&addresses).unwrap();
        let n = addresses.len();
        for (id, &a) in addresses.iter().enumerate() {
            let expected = (id < n - 2).then_some(id as u32);
            assert_eq!(table.id_at(a), expected, "{a:#x}");
        }
        for a in [
            0x7f00_0000_0000,
            0x7f00_0000_0018,
            0x7f00_0000_0030 + 8,
            0x5555_0000_0010,
            0x6000_0000_0110,
            0x1234_5678_9ab0,
            0,
        ] {
            assert_eq!(table.id_at(a), None, "{a:#x}");
        }
    }

    #[test]
    fn covers_at_most_two_spans_of_addresses() {
        // Three groups far apart: the smallest is not in the table (its ids are read the
        // general way); and addresses spread over more than one span's reach are refused.
        let mut addresses: Vec<usize> = (0..100).map(|i| 0x1000_0000 + 32 * i).collect();
        addresses.extend((0..60).map(|i| 0x7000_0000_0000 + 32 * i));
        addresses.extend((0..40).map(|i| 0x3000_0000_0000 + 32 * i));
        let table = IntIds::new(&addresses).unwrap();
        for (id, &a) in addresses.iter().enumerate() {
            assert_eq!(table.id_at(a), (id < 160).then_some(id as u32), "{a:#x}");
        }
        let spread: Vec<usize> = (0..100).map(|i| 0x1000_0000 + (1 << 30) * i).collect();
        assert!(IntIds::new(&spread).is_none());
    }
}
