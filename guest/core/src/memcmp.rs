//! `memcmp` for the components. The C library the `wasm32-wasip2` target links (wasi-libc: musl's string
//! functions, built without SIMD) compares one byte at a time, and every comparison of byte strings in the
//! component goes through it: map keys, sorting, paths. A merge of 10,000 files spends ~4 % of its CPU there.
//! This one compares eight bytes at a time. Only a wasm32 build exports it (in place of the C library's); the
//! comparison itself is plain Rust, tested on every target.

/// How the `n` bytes at `a` and at `b` order: negative, zero or positive as `a`'s first differing byte
/// (unsigned) is below, equal to (no difference) or above `b`'s — `memcmp`'s contract.
///
/// # Safety
/// `a` and `b` must each point to `n` readable bytes.
#[inline]
pub unsafe fn compare(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while n - i >= 8 {
        // SAFETY: i + 8 <= n bytes are readable at each; the reads need no alignment.
        let (x, y) = unsafe { (a.add(i).cast::<u64>().read_unaligned(), b.add(i).cast::<u64>().read_unaligned()) };
        if x != y {
            // As little-endian numbers, the lowest differing bit is in the first differing byte.
            let first = i + (u64::from_le(x) ^ u64::from_le(y)).trailing_zeros() as usize / 8;
            // SAFETY: first < i + 8 <= n.
            return unsafe { i32::from(*a.add(first)) - i32::from(*b.add(first)) };
        }
        i += 8;
    }
    while i < n {
        // SAFETY: i < n.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// The C library's `memcmp`, which Rust's comparisons of byte strings call, in the component.
///
/// # Safety
/// As [`compare`].
#[cfg(target_arch = "wasm32")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: the caller's promise.
    unsafe { compare(a, b, n) }
}

#[cfg(test)]
mod tests {
    use super::compare;
    use std::cmp::Ordering;

    fn ordering(a: &[u8], b: &[u8]) -> Ordering {
        assert_eq!(a.len(), b.len());
        // SAFETY: both slices hold len bytes.
        unsafe { compare(a.as_ptr(), b.as_ptr(), a.len()) }.cmp(&0)
    }

    /// Every length up to 40, a difference at every place (or none), either way round, with bytes above 127
    /// (unsigned, as `memcmp` orders them), at every offset from an aligned start: the order of slices.
    #[test]
    fn orders_as_slices_do() {
        let base: Vec<u8> = (0..48u8).map(|i| i.wrapping_mul(37).wrapping_add(11)).collect();
        for offset in 0..8 {
            for len in 0..=40 {
                let a = &base[offset..offset + len];
                assert_eq!(ordering(a, a), Ordering::Equal);
                for at in 0..len {
                    for (x, y) in [(0x00, 0x01), (0x7f, 0x80), (0x80, 0xff), (0x10, 0xf0)] {
                        let (mut lo, mut hi) = (a.to_vec(), a.to_vec());
                        (lo[at], hi[at]) = (x, y);
                        // A second difference later never changes the order the first one gives.
                        if at + 1 < len {
                            (lo[len - 1], hi[len - 1]) = (0xff, 0x00);
                        }
                        assert_eq!(ordering(&lo, &hi), Ordering::Less, "len {len} at {at} offset {offset}");
                        assert_eq!(ordering(&hi, &lo), Ordering::Greater, "len {len} at {at} offset {offset}");
                        assert_eq!(ordering(&lo, &hi), lo.cmp(&hi));
                    }
                }
            }
        }
    }
}
