//! CPython's cyclic garbage collector held off while a batch's result lists are made.
//!
//! A list is a container, so every one made counts towards the next collection of the youngest
//! generation (one per 700 made, by default), and on CPython 3.10 and 3.11 that collection runs
//! inside the allocation that crosses the threshold: `encode_batch` of 60,000 short texts ran
//! some 85 collections while it made its lists, each traversing the lists made since the one
//! before, and through them the older generations ran more often than they would have. With the
//! collector off while the lists are made, the lists are counted all the same and the next
//! allocation after it is back on collects the youngest generation once.
//!
//! [`Paused`] turns the collector off only where the calling thread holds the GIL and runs no
//! Python code (it only makes lists of `int`s: each list of ids, in `PyTokenizer::id_list`, and
//! `encode_chat`'s results), and back on before anything else can run: no
//! other thread, finalizer or callback can see it off. It leaves the collector off if the
//! caller had turned it off (`gc.disable()`).
//!
//! Measured on 3.11 (`docs/performance.md`, thirteenth round): a loop of `encode_batch` calls
//! over 60,253 lines, with its collections, in 21-31 % less time in a process holding 400,000
//! other containers. Turning each list's tracking off while it is made instead (and back on at
//! the end) did not shorten the loop: the same collections ran, at other moments.

use std::marker::PhantomData;

use pyo3::ffi;
use pyo3::Python;

/// The collector off until this is dropped, if it was on. It holds the GIL's token, so it cannot
/// be moved into code that runs without the GIL; callers drop it before they release the GIL.
pub struct Paused<'py> {
    was_on: bool,
    _gil: PhantomData<Python<'py>>,
}

impl<'py> Paused<'py> {
    /// Turns the collector off. The caller runs no Python code while this lives.
    #[allow(unsafe_code)]
    pub fn new(_py: Python<'py>) -> Self {
        // SAFETY: the GIL is held (the token proves it). `PyGC_Disable` only sets the
        // interpreter's flag and returns its previous value.
        let was_on = unsafe { ffi::PyGC_Disable() } != 0;
        Paused {
            was_on,
            _gil: PhantomData,
        }
    }
}

impl Drop for Paused<'_> {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        if self.was_on {
            // SAFETY: as in `new`; this value cannot have left the thread that holds the GIL.
            unsafe { ffi::PyGC_Enable() };
        }
    }
}
