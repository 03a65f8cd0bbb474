//! What the import reads from one uploaded file's DICOM header: the UIDs that sort it into a session and a
//! scan, and the fields XNAT's session builder writes into the session document. Read with dicom-rs
//! (`dicom-object`) up to the pixel data; files small enough are also read to their end, so that a file cut
//! short inside its pixel data is told apart from a whole one.
//!
//! Accepted: DICOM Part 10 files (with or without the 128-byte preamble) in any transfer syntax the
//! registry names (pixel data is never decoded), and bare data sets without a file meta group (implicit or
//! explicit VR little endian), as XNAT's dcm4che reader accepts them.

use dicom_core::Tag;
use dicom_core::value::{PrimitiveValue, Value};
use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::{InMemDicomObject, OpenFileOptions};
use std::io::{Read, Seek, SeekFrom};

/// The largest bare data set (no file meta group) read: such a file is parsed whole.
pub const BARE_READ_LIMIT: u64 = 64 << 20;

/// The header fields of one DICOM file that the import uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub modality: String,
    pub series_number: String,
    pub instance_number: String,
    pub number_of_frames: u64,
    pub study_date: String,
    pub study_time: String,
    pub study_description: String,
    pub study_id: String,
    pub series_description: String,
    pub accession_number: String,
    pub patient_name: String,
    pub patient_id: String,
    pub patient_birth_date: String,
    pub patient_comments: String,
    pub study_comments: String,
    pub additional_patient_history: String,
    pub manufacturer: String,
    pub model: String,
    pub station: String,
    pub transfer_syntax: String,
}

/// Why a file is not imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable {
    /// Not DICOM at all, or a header that cannot be parsed.
    NotDicom(String),
    /// A DICOM header that ends early, or pixel data cut short.
    Truncated(String),
    /// DICOM, but without the UIDs a session and a scan are sorted by.
    MissingUid(&'static str),
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreadable::NotDicom(why) => write!(f, "not a DICOM file ({why})"),
            Unreadable::Truncated(why) => write!(f, "a truncated DICOM file ({why})"),
            Unreadable::MissingUid(which) => {
                write!(f, "a DICOM file without a {which}, which the import sorts files by")
            }
        }
    }
}

/// Reads the header of the file `file` (`len` bytes long).
pub fn read_header(file: &mut (impl Read + Seek), len: u64) -> Result<Header, Unreadable> {
    let mut head = [0u8; 132];
    let got = read_up_to(file, &mut head).map_err(|e| Unreadable::NotDicom(e.to_string()))?;
    let head = &head[..got];
    let start = if head.len() == 132 && &head[128..132] == b"DICM" {
        Some(128)
    } else if head.starts_with(b"DICM") {
        Some(0)
    } else {
        None
    };
    let object = match start {
        Some(at) => {
            scan_lengths(file, at + 4, len)?;
            seek(file, at)?;
            let header = OpenFileOptions::new()
                .read_preamble(ReadPreamble::Never)
                .read_until(tags::PIXEL_DATA)
                .from_reader(&mut *file)
                .map_err(|e| classify(&e.to_string(), file, len))?;
            let ts = header.meta().transfer_syntax().trim_end_matches('\0').to_string();
            header_of(&header, ts)
        }
        None => bare_data_set(file, len)?,
    };
    object.checked()
}

/// A data set without the file meta group: implicit VR little endian (the default transfer syntax), else
/// explicit VR little endian. Read whole, so only files within [`BARE_READ_LIMIT`].
fn bare_data_set(file: &mut (impl Read + Seek), len: u64) -> Result<Header, Unreadable> {
    use dicom_transfer_syntax_registry::entries::{EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN};
    if len > BARE_READ_LIMIT {
        return Err(Unreadable::NotDicom("no DICM marker, and too large to be read as a bare data set".into()));
    }
    if !plausible(&read_head(file, 2)?) {
        return Err(Unreadable::NotDicom("no DICM marker, and it does not start like a data set".into()));
    }
    scan_dataset(file, 0, len, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .or_else(|_| scan_dataset(file, 0, len, &EXPLICIT_VR_LITTLE_ENDIAN.erased()))?;
    let mut bytes = Vec::with_capacity(len as usize);
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|e| Unreadable::NotDicom(e.to_string()))?;
    let mut last = String::from("no DICM marker");
    for ts in [IMPLICIT_VR_LITTLE_ENDIAN.erased(), EXPLICIT_VR_LITTLE_ENDIAN.erased()] {
        match InMemDicomObject::read_dataset_with_ts(&bytes[..], &ts) {
            // A bare data set must at least start like one: its first element in group 0008 (or 0002 for
            // a stray meta group) and hold a SOP instance UID; anything else parses by accident.
            Ok(object) if plausible(&bytes) && object.element_opt(tags::SOP_INSTANCE_UID).ok().flatten().is_some() => {
                return Ok(fields(|tag| text(&object, tag), ts.uid().trim_end_matches('\0').to_string()));
            }
            Ok(_) => last = "no DICM marker and no data set".into(),
            Err(e) => last = format!("no DICM marker, and not a bare data set: {e}"),
        }
    }
    Err(Unreadable::NotDicom(last))
}

/// Whether bytes start like a data set's first element (group 0002 or 0008, little endian).
fn plausible(bytes: &[u8]) -> bool {
    matches!(bytes.get(..2), Some([0x02 | 0x08, 0x00]))
}

/// A header parse failure: truncated when the file ended mid-element, else not DICOM.
fn classify(message: &str, file: &mut (impl Read + Seek), len: u64) -> Unreadable {
    let at = file.stream_position().unwrap_or(0);
    if at >= len || message.contains("end of file") || message.contains("UnexpectedEof") {
        Unreadable::Truncated(format!("its header ends early: {message}"))
    } else {
        Unreadable::NotDicom(message.to_string())
    }
}

fn header_of(object: &InMemDicomObject, transfer_syntax: String) -> Header {
    fields(|tag| text(object, tag), transfer_syntax)
}

fn fields(get: impl Fn(Tag) -> String, transfer_syntax: String) -> Header {
    Header {
        sop_class_uid: get(tags::SOP_CLASS_UID),
        sop_instance_uid: get(tags::SOP_INSTANCE_UID),
        study_instance_uid: get(tags::STUDY_INSTANCE_UID),
        series_instance_uid: get(tags::SERIES_INSTANCE_UID),
        modality: get(tags::MODALITY),
        series_number: get(tags::SERIES_NUMBER),
        instance_number: get(tags::INSTANCE_NUMBER),
        number_of_frames: get(tags::NUMBER_OF_FRAMES).parse().unwrap_or(1).max(1),
        study_date: get(tags::STUDY_DATE),
        study_time: get(tags::STUDY_TIME),
        study_description: get(tags::STUDY_DESCRIPTION),
        study_id: get(tags::STUDY_ID),
        series_description: get(tags::SERIES_DESCRIPTION),
        accession_number: get(tags::ACCESSION_NUMBER),
        patient_name: get(tags::PATIENT_NAME),
        patient_id: get(tags::PATIENT_ID),
        patient_birth_date: get(tags::PATIENT_BIRTH_DATE),
        patient_comments: get(tags::PATIENT_COMMENTS),
        // Retired in the standard, still what XNAT's identifier reads.
        #[allow(deprecated)]
        study_comments: get(tags::STUDY_COMMENTS),
        additional_patient_history: get(tags::ADDITIONAL_PATIENT_HISTORY),
        manufacturer: get(tags::MANUFACTURER),
        model: get(tags::MANUFACTURER_MODEL_NAME),
        station: get(tags::STATION_NAME),
        transfer_syntax,
    }
}

/// An element's value as text, trimmed of DICOM's padding (spaces, NULs); values read as bytes (VR `UN`,
/// or `OB` where a writer mislabelled a string) are taken as the ASCII text they hold. Multiple values are
/// joined with `\`, as DICOM writes them.
fn text(object: &InMemDicomObject, tag: Tag) -> String {
    let Ok(Some(element)) = object.element_opt(tag) else { return String::new() };
    let raw = match element.value() {
        Value::Primitive(PrimitiveValue::U8(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        Value::Primitive(_) => element.to_str().map(|s| s.into_owned()).unwrap_or_default(),
        _ => String::new(),
    };
    raw.trim_matches(|c: char| c == ' ' || c == '\0').to_string()
}

impl Header {
    /// The header, if it holds the UIDs the import sorts by.
    fn checked(self) -> Result<Header, Unreadable> {
        if self.study_instance_uid.is_empty() {
            return Err(Unreadable::MissingUid("Study Instance UID (0020,000D)"));
        }
        if self.sop_instance_uid.is_empty() {
            return Err(Unreadable::MissingUid("SOP Instance UID (0008,0018)"));
        }
        if self.series_instance_uid.is_empty() {
            return Err(Unreadable::MissingUid("Series Instance UID (0020,000E)"));
        }
        Ok(self)
    }

    /// The modality in capitals, or `default` when the header names none.
    pub fn modality_or(&self, default: &str) -> String {
        if self.modality.is_empty() { default.into() } else { self.modality.to_ascii_uppercase() }
    }
}

fn read_head(file: &mut (impl Read + Seek), n: usize) -> Result<Vec<u8>, Unreadable> {
    seek(file, 0)?;
    let mut head = vec![0u8; n];
    let got = read_up_to(file, &mut head).map_err(|e| Unreadable::NotDicom(e.to_string()))?;
    head.truncate(got);
    Ok(head)
}

/// Walks a Part 10 file's element headers from `start` (just after `DICM`): the file meta group in explicit
/// VR little endian, then the data set in the transfer syntax the meta group names. Every declared length
/// must end within the file (`len` bytes). A deflated data set is not walked (its lengths are those of the
/// inflated stream).
fn scan_lengths(file: &mut (impl Read + Seek), start: u64, len: u64) -> Result<(), Unreadable> {
    use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
    use dicom_parser::stateful::decode::{StatefulDecode, StatefulDecoder};
    use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
    use dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN;
    let explicit = EXPLICIT_VR_LITTLE_ENDIAN.erased();
    let mut pos = start;
    let mut ts_uid = None;
    loop {
        if pos >= len {
            return Ok(());
        }
        seek(file, pos)?;
        let mut dec = StatefulDecoder::new_with_ts(&mut *file, &explicit, pos)
            .map_err(|e| Unreadable::NotDicom(e.to_string()))?;
        let header = dec.decode_header().map_err(|e| cut_or_bad(&e.to_string(), pos, len))?;
        if header.tag.group() != 0x0002 {
            break;
        }
        let value_len =
            header.len.get().ok_or_else(|| Unreadable::NotDicom("a file meta element of undefined length".into()))?;
        let at = dec.position();
        if at + u64::from(value_len) > len {
            return Err(Unreadable::Truncated(format!(
                "file meta element {} claims {value_len} bytes past the end",
                header.tag
            )));
        }
        if header.tag == tags::TRANSFER_SYNTAX_UID && value_len <= 128 {
            let mut v = Vec::new();
            dec.read_to_vec(value_len, &mut v).map_err(|e| cut_or_bad(&e.to_string(), at, len))?;
            ts_uid = Some(String::from_utf8_lossy(&v).trim_end_matches(['\0', ' ']).to_string());
        }
        pos = at + u64::from(value_len);
    }
    let Some(uid) = ts_uid else {
        return Err(Unreadable::NotDicom("the file meta group names no transfer syntax".into()));
    };
    match TransferSyntaxRegistry.get(&uid) {
        Some(ts) if uid != "1.2.840.10008.1.2.1.99" => scan_dataset(file, pos, len, ts),
        Some(_) => Ok(()),
        None => Err(Unreadable::NotDicom(format!("transfer syntax {uid} is not one DICOM defines"))),
    }
}

/// Walks a data set's element headers from `pos` in transfer syntax `ts`, seeking over values; see
/// [`scan_lengths`]. Sequences and items are entered; fragments of encapsulated pixel data skipped.
fn scan_dataset(
    file: &mut (impl Read + Seek),
    mut pos: u64,
    len: u64,
    ts: &dicom_encoding::transfer_syntax::TransferSyntax,
) -> Result<(), Unreadable> {
    use dicom_core::VR;
    use dicom_parser::stateful::decode::{StatefulDecode, StatefulDecoder};
    let mut fragments = false;
    while pos < len {
        seek(file, pos)?;
        let mut dec =
            StatefulDecoder::new_with_ts(&mut *file, ts, pos).map_err(|e| Unreadable::NotDicom(e.to_string()))?;
        let header = dec.decode_header().map_err(|e| cut_or_bad(&e.to_string(), pos, len))?;
        let at = dec.position();
        let declared = header.len.get();
        let past = |n: u32| at + u64::from(n) > len;
        match (header.tag.group(), header.tag.element()) {
            (0xFFFE, 0xE0DD) => {
                fragments = false;
                pos = at;
            }
            (0xFFFE, 0xE00D) => pos = at,
            (0xFFFE, 0xE000) if fragments => match declared {
                Some(n) if past(n) => {
                    return Err(Unreadable::Truncated(format!("a pixel data fragment claims {n} bytes past the end")));
                }
                Some(n) => pos = at + u64::from(n),
                None => return Err(Unreadable::NotDicom("a pixel data fragment of undefined length".into())),
            },
            (0xFFFE, _) => match declared {
                Some(n) if past(n) => {
                    return Err(Unreadable::Truncated(format!("an item claims {n} bytes past the end")));
                }
                _ => pos = at,
            },
            _ if header.vr == VR::SQ => match declared {
                Some(n) if past(n) => {
                    return Err(Unreadable::Truncated(format!(
                        "sequence {} claims {n} bytes past the end",
                        header.tag
                    )));
                }
                _ => pos = at,
            },
            _ => match declared {
                None => {
                    // Encapsulated pixel data (fragments follow) or an undefined-length UN (a sequence).
                    fragments = header.tag == tags::PIXEL_DATA;
                    pos = at;
                }
                Some(n) if past(n) => {
                    return Err(Unreadable::Truncated(format!(
                        "element {} claims {n} bytes, {} past the end of the file",
                        header.tag,
                        at + u64::from(n) - len
                    )));
                }
                Some(n) => pos = at + u64::from(n),
            },
        }
    }
    Ok(())
}

/// A header that could not be decoded: cut off when too few bytes were left for one, else not DICOM.
fn cut_or_bad(message: &str, pos: u64, len: u64) -> Unreadable {
    if len - pos < 12
        || message.contains("end of file")
        || message.contains("UnexpectedEof")
        || message.contains("fill whole buffer")
    {
        Unreadable::Truncated(format!("its data ends inside an element header ({message})"))
    } else {
        Unreadable::NotDicom(message.to_string())
    }
}

fn seek(file: &mut impl Seek, at: u64) -> Result<(), Unreadable> {
    file.seek(SeekFrom::Start(at)).map(|_| ()).map_err(|e| Unreadable::NotDicom(e.to_string()))
}

fn read_up_to(file: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receive::samples::dicom;
    use std::io::Cursor;

    fn read(bytes: &[u8]) -> Result<Header, Unreadable> {
        read_header(&mut Cursor::new(bytes), bytes.len() as u64)
    }

    #[test]
    fn whole_cut_forged_and_foreign_files() {
        let whole = dicom("1.2", "1.2.3", "7", 4, "MR", "P");
        let h = read(&whole).unwrap();
        assert_eq!(
            (h.study_instance_uid.as_str(), h.series_number.as_str(), h.instance_number.as_str()),
            ("1.2", "7", "4")
        );
        assert_eq!((h.modality.as_str(), h.transfer_syntax.as_str()), ("MR", "1.2.840.10008.1.2.1"));
        // Cut inside the pixel data, inside a header, inside the preamble.
        for cut in [whole.len() - 10, whole.len() - 515, 140, 100] {
            let e = read(&whole[..cut]).unwrap_err();
            assert!(matches!(e, Unreadable::Truncated(_) | Unreadable::NotDicom(_)), "{cut}: {e:?}");
        }
        assert!(matches!(read(&whole[..whole.len() - 10]), Err(Unreadable::Truncated(_))));
        // A forged length of 2 GiB (an OB element before the patient's name) is found before anything is
        // allocated for it.
        let at = whole.windows(6).position(|w| w == b"\x10\x00\x10\x00PN").unwrap();
        let mut forged = whole[..at].to_vec();
        forged.extend_from_slice(b"\x09\x00\x10\x00OB\x00\x00");
        forged.extend_from_slice(&0x7fff_fff0u32.to_le_bytes());
        forged.extend_from_slice(&whole[at..]);
        assert!(matches!(read(&forged), Err(Unreadable::Truncated(m)) if m.contains("past the end")));
        assert!(matches!(read(b"hello, this is not DICOM at all"), Err(Unreadable::NotDicom(_))));
        assert!(matches!(read(b""), Err(Unreadable::NotDicom(_))));
    }

    #[test]
    fn a_bare_data_set_is_read_and_uids_are_required() {
        let whole = dicom("1.2", "1.2.3", "7", 4, "MR", "P");
        // The data set without preamble and meta group, in explicit VR little endian.
        let meta_end = {
            let group_len = u32::from_le_bytes(whole[140..144].try_into().unwrap()) as usize;
            144 + group_len
        };
        let h = read(&whole[meta_end..]).unwrap();
        assert_eq!(h.sop_instance_uid, "1.2.3.4");
        let mut no_study = whole.clone();
        let at = no_study.windows(4).position(|w| w == b"\x20\x00\x0d\x00").unwrap();
        no_study[at + 2] = 0x0c; // (0020,000C): no Study Instance UID any more
        assert!(matches!(read(&no_study), Err(Unreadable::MissingUid(_))));
    }
}
