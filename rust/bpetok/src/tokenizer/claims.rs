//! The order in which the threads of a batch take its texts.

use std::sync::{Mutex, PoisonError};

/// Hands out the indices `0..n` of a batch to `workers` threads, each index once. The indices
/// are cut into one contiguous region per worker; a worker takes the next index from the front
/// of its own region, and once that is empty, from the back of the region with the most indices
/// left. So each worker mostly encodes neighbouring texts, and all finish at about the same time.
///
/// Why neighbours: each thread has its own cache of the segments it has met, and neighbouring
/// documents of a corpus share more of their words than documents far apart. Taking texts in
/// turn (thread 1 the 1st, 3rd, 5th, ...) left each cache with the words of every other
/// document: in one pass over 3 MB of fresh text, the two halves of a batch taken in turn by two
/// caches cost 8-11 % more encoding than one cache for all of it, two contiguous halves 2-9 %.
/// Taking from the back of another region when a worker runs out keeps the balance that
/// handing out one index at a time gave: the last index taken is near the middle of the
/// fullest region, not the end of the batch, so a long document at the end of a batch no longer
/// finishes alone.
///
/// [`Claims::by_size`] also puts each region's large items (over an eighth of the region's size)
/// at its front, largest first: a long document is then started early, while the other workers
/// have the rest of the batch to do, instead of whenever its turn comes, perhaps last.
#[derive(Debug)]
pub struct Claims {
    /// Each region's positions not yet taken, `start..end`.
    regions: Box<[Mutex<(usize, usize)>]>,
    /// Each region's positions, all of them.
    bounds: Box<[(usize, usize)]>,
    /// The index at each position, if not the position itself.
    order: Option<Box<[usize]>>,
}

/// An item is large, and taken first in its region, when it is more than this fraction
/// (1 / `LARGE_SHARE`) of its region's size.
const LARGE_SHARE: usize = 8;

impl Claims {
    /// The claims of `n` indices for `workers` workers (at least one region).
    pub fn new(n: usize, workers: usize) -> Self {
        let workers = workers.clamp(1, n.max(1));
        let bounds: Box<[(usize, usize)]> = (0..workers)
            .map(|w| (n * w / workers, n * (w + 1) / workers))
            .collect();
        let regions = bounds.iter().map(|&bounds| Mutex::new(bounds)).collect();
        Self {
            regions,
            bounds,
            order: None,
        }
    }

    /// [`Claims::new`] for items of these sizes (in any unit: bytes, characters, ids): the same
    /// regions, each with its items of more than an eighth of its size first, largest first, then
    /// the others in index order. With two threads and 3 MB of the multilingual sample, whose
    /// largest document is 13 % of it, that document came up when the other thread had little
    /// left often enough to cost 6 % of the batch (a simulation of the claims with each
    /// document's one-thread time; under 1 % on the other corpora).
    pub fn by_size(sizes: &[usize], workers: usize) -> Self {
        let mut claims = Self::new(sizes.len(), workers);
        // Made (as the identity) only once a region's order changes.
        let mut order: Option<Vec<usize>> = None;
        for &(start, end) in claims.bounds.iter() {
            let total: usize = sizes[start..end].iter().sum();
            let large = |i: usize| sizes[i].saturating_mul(LARGE_SHARE) > total;
            // (At most LARGE_SHARE - 1 of them, or a region of fewer items: a short sort.)
            let mut first: Vec<usize> = (start..end).filter(|&i| large(i)).collect();
            // Large ones first (largest first, then by index), the rest stay in order.
            first.sort_by_key(|&i| (std::cmp::Reverse(sizes[i]), i));
            if first.iter().copied().eq(start..start + first.len()) {
                continue; // already in front, in that order (or none)
            }
            let order = order.get_or_insert_with(|| (0..sizes.len()).collect());
            let rest = (start..end).filter(|&i| !large(i));
            for (slot, i) in order[start..end]
                .iter_mut()
                .zip(first.iter().copied().chain(rest))
            {
                *slot = i;
            }
        }
        claims.order = order.map(Vec::into_boxed_slice);
        claims
    }

    /// The index at position `pos`.
    #[inline]
    fn index(&self, pos: usize) -> usize {
        self.order.as_ref().map_or(pos, |order| order[pos])
    }

    /// How many regions (workers) there are.
    pub fn workers(&self) -> usize {
        self.regions.len()
    }

    /// The next index for the worker whose region is `home` (taken modulo the number of
    /// regions), or `None` once every index is taken. (A region's "front" and "back" are those
    /// of its positions: for [`Claims::by_size`], its large items come first.)
    pub fn next(&self, home: usize) -> Option<usize> {
        let home = home % self.regions.len();
        {
            let mut own = lock(&self.regions[home]);
            if own.0 < own.1 {
                own.0 += 1;
                return Some(self.index(own.0 - 1));
            }
        }
        loop {
            // The fullest other region, then its last index (another worker may have taken it
            // between the two looks: look again).
            let (fullest, left) = self
                .regions
                .iter()
                .enumerate()
                .map(|(r, region)| {
                    let (start, end) = *lock(region);
                    (r, end - start)
                })
                .max_by_key(|&(r, left)| (left, std::cmp::Reverse(r)))?;
            if left == 0 {
                return None;
            }
            let mut region = lock(&self.regions[fullest]);
            if region.0 < region.1 {
                region.1 -= 1;
                return Some(self.index(region.1));
            }
        }
    }

    /// Every index once, in the order the workers are likely to want them: the regions' fronts in
    /// turn (the first index of each region, then the second of each, ...). A thread that makes
    /// the texts ready one by one (reading them from Python) makes them ready in this order. It
    /// does not depend on the indices taken so far.
    pub fn ready_order(&self) -> impl Iterator<Item = usize> + '_ {
        let longest = self.bounds.iter().map(|(s, e)| e - s).max().unwrap_or(0);
        (0..longest).flat_map(move |k| {
            self.bounds
                .iter()
                .filter(move |&&(start, end)| start + k < end)
                .map(move |&(start, _)| self.index(start + k))
        })
    }
}

fn lock(region: &Mutex<(usize, usize)>) -> std::sync::MutexGuard<'_, (usize, usize)> {
    // The pair is valid whatever a panicking holder did (it is written in one assignment).
    region.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::Claims;
    use std::sync::Mutex;

    #[test]
    fn each_worker_takes_its_region_in_order_then_the_back_of_the_fullest() {
        let claims = Claims::new(10, 2);
        // Region 0 is 0..5, region 1 is 5..10.
        assert_eq!(claims.next(0), Some(0));
        assert_eq!(claims.next(1), Some(5));
        assert_eq!(claims.next(1), Some(6));
        let rest: Vec<_> = std::iter::from_fn(|| claims.next(1)).collect();
        // 7, 8, 9 from its own region, then region 0 (1..5) from its back.
        assert_eq!(rest, vec![7, 8, 9, 4, 3, 2, 1]);
        assert_eq!(claims.next(0), None);
    }

    #[test]
    fn the_ready_order_takes_the_regions_fronts_in_turn() {
        let claims = Claims::new(7, 3);
        assert_eq!(
            claims.ready_order().collect::<Vec<_>>(),
            vec![0, 2, 4, 1, 3, 5, 6]
        );
        // Taking indices does not change it: a reader that starts late still makes every one
        // ready.
        assert_eq!(claims.next(0), Some(0));
        assert_eq!(claims.next(2), Some(4));
        assert_eq!(
            claims.ready_order().collect::<Vec<_>>(),
            vec![0, 2, 4, 1, 3, 5, 6]
        );
        assert_eq!(Claims::new(0, 4).ready_order().count(), 0);
        assert_eq!(Claims::new(3, 8).workers(), 3);
    }

    #[test]
    fn a_region_starts_with_its_large_items_largest_first() {
        // Region 0 is 0..5 (size 60: over 7 is large), region 1 is 5..10 (size 84: over 10).
        let sizes = [1, 9, 1, 40, 9, 1, 1, 11, 70, 1];
        let claims = Claims::by_size(&sizes, 2);
        let first: Vec<_> = std::iter::from_fn(|| claims.next(0)).take(5).collect();
        assert_eq!(first, vec![3, 1, 4, 0, 2]);
        assert_eq!(claims.next(1), Some(8));
        assert_eq!(claims.next(1), Some(7));
        // Region 0 is done: worker 0 takes from the back of region 1, in its order.
        assert_eq!(claims.next(0), Some(9));
        assert_eq!(
            std::iter::from_fn(|| claims.next(1)).collect::<Vec<_>>(),
            vec![5, 6]
        );
        assert_eq!(claims.next(0), None);
        // The reader makes them ready in the order the workers take them.
        let again = Claims::by_size(&sizes, 2);
        assert_eq!(
            again.ready_order().collect::<Vec<_>>(),
            vec![3, 8, 1, 7, 4, 5, 0, 6, 2, 9]
        );
        // Items of even sizes keep the order of `new`.
        let even = Claims::by_size(&[5; 10], 2);
        assert!(even.order.is_none());
        assert_eq!(
            even.ready_order().collect::<Vec<_>>(),
            Claims::new(10, 2).ready_order().collect::<Vec<_>>()
        );
    }

    /// Threads taking at once get every index exactly once, whatever the numbers.
    #[test]
    fn every_index_is_taken_once_by_racing_workers() {
        for (n, workers, sized) in [
            (0, 2, false),
            (1, 3, false),
            (2, 2, false),
            (97, 2, false),
            (1000, 3, false),
            (5, 8, false),
            (0, 2, true),
            (1, 3, true),
            (97, 2, true),
            (1000, 3, true),
        ] {
            let claims = if sized {
                let sizes: Vec<usize> = (0..n).map(|i| (i * 7919) % 101 + (i % 13) * 500).collect();
                Claims::by_size(&sizes, workers)
            } else {
                Claims::new(n, workers)
            };
            let mut ready: Vec<_> = claims.ready_order().collect();
            ready.sort_unstable();
            assert_eq!(ready, (0..n).collect::<Vec<_>>());
            let taken = Mutex::new(Vec::new());
            std::thread::scope(|scope| {
                for w in 0..workers {
                    let (claims, taken) = (&claims, &taken);
                    scope.spawn(move || {
                        while let Some(i) = claims.next(w) {
                            taken.lock().unwrap().push(i);
                        }
                    });
                }
            });
            let mut taken = taken.into_inner().unwrap();
            taken.sort_unstable();
            assert_eq!(
                taken,
                (0..n).collect::<Vec<_>>(),
                "n {n}, {workers} workers, by size {sized}"
            );
        }
    }
}
