//! `cargo fuzz run dicom --sanitizer none --features libfuzzer` (see bench/fuzz.sh).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xnat_fuzz::dicom(data));
