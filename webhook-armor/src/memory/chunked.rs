//! A first-in first-out queue that grows a chunk at a time, so growing it
//! never moves what it already holds.
//!
//! A `VecDeque` doubles its buffer when full and moves every element while
//! the caller holds the store's lock. The memory queue keeps every completed
//! id for its retention (24 hours by default: 8.6 million ids at 100
//! webhooks/s). `growth-stall 4000000` (in `benches/`) measured the slowest
//! single ack at 203 ms, at exactly 2,097,152 remembered ids, where the
//! `VecDeque` doubled; with this queue the slowest was 4.9 ms, and the mean
//! ack went from 0.33 to 0.18 µs. A full chunk is left as it is and a new one
//! started; only the small ring of chunk handles ever doubles.

use std::collections::VecDeque;

/// Elements per chunk: large enough that the ring of chunks stays small
/// (2.4 million ids are 2,344 chunks), small enough that allocating one is
/// cheap.
const CHUNK: usize = 1024;

#[derive(Debug)]
pub(crate) struct ChunkedQueue<T> {
    /// Each chunk holds at most `CHUNK` elements and never reallocates;
    /// the oldest element is at the front of the first chunk.
    chunks: VecDeque<VecDeque<T>>,
}

impl<T> Default for ChunkedQueue<T> {
    fn default() -> Self {
        Self {
            chunks: VecDeque::new(),
        }
    }
}

impl<T> ChunkedQueue<T> {
    pub(crate) fn push_back(&mut self, value: T) {
        match self.chunks.back_mut() {
            Some(last) if last.len() < CHUNK => last.push_back(value),
            _ => {
                let mut chunk = VecDeque::with_capacity(CHUNK);
                chunk.push_back(value);
                self.chunks.push_back(chunk);
            }
        }
    }

    pub(crate) fn front(&self) -> Option<&T> {
        self.chunks.front().and_then(VecDeque::front)
    }

    pub(crate) fn pop_front(&mut self) -> Option<T> {
        let first = self.chunks.front_mut()?;
        let value = first.pop_front();
        if first.is_empty() {
            self.chunks.pop_front();
        }
        value
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.chunks.iter().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_full_chunk_is_never_reallocated() {
        let mut queue = ChunkedQueue::default();
        queue.push_back(0usize);
        let first_chunk = queue.chunks[0].as_slices().0.as_ptr();
        for i in 1..3 * CHUNK {
            queue.push_back(i);
        }
        assert_eq!(queue.chunks.len(), 3);
        assert_eq!(queue.chunks[0].as_slices().0.as_ptr(), first_chunk);
        assert!(queue.chunks.iter().all(
            |chunk| chunk.capacity() == CHUNK || chunk.capacity() == CHUNK.next_power_of_two()
        ));
    }

    proptest! {
        /// Any sequence of pushes and pops behaves as a `VecDeque` does.
        #[test]
        fn behaves_as_a_vec_deque(operations in proptest::collection::vec(
            prop_oneof![3 => any::<u16>().prop_map(Some), 2 => Just(None)], 0..5000)
        ) {
            let mut queue = ChunkedQueue::default();
            let mut model = VecDeque::new();
            for operation in operations {
                match operation {
                    Some(value) => {
                        queue.push_back(value);
                        model.push_back(value);
                    }
                    None => prop_assert_eq!(queue.pop_front(), model.pop_front()),
                }
                prop_assert_eq!(queue.front(), model.front());
                prop_assert_eq!(queue.len(), model.len());
            }
            while let Some(value) = model.pop_front() {
                prop_assert_eq!(queue.pop_front(), Some(value));
            }
            prop_assert_eq!(queue.pop_front(), None);
            prop_assert_eq!(queue.len(), 0);
        }
    }
}
