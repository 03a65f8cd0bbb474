//! Sample DICOM files written by dicom-rs, and zips of them: what the demo imports and the tests send. Small
//! (a few hundred bytes of pixel data each) and real: every header field the import reads is there.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use std::io::Write;

/// One DICOM file (explicit VR little endian, a small pixel data element), written by dicom-rs.
pub fn dicom(study: &str, series: &str, series_number: &str, instance: u32, modality: &str, patient: &str) -> Vec<u8> {
    let sop = format!("{series}.{instance}");
    let class = if modality == "CT" { "1.2.840.10008.5.1.4.1.1.2" } else { "1.2.840.10008.5.1.4.1.1.4" };
    let mut o = InMemDicomObject::new_empty();
    let mut put = |tag, vr, v: &str| {
        o.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
    };
    put(tags::SOP_CLASS_UID, VR::UI, class);
    put(tags::SOP_INSTANCE_UID, VR::UI, &sop);
    put(tags::STUDY_DATE, VR::DA, "20240131");
    put(tags::STUDY_TIME, VR::TM, "101530.25");
    put(tags::MODALITY, VR::CS, modality);
    put(tags::MANUFACTURER, VR::LO, "ACME");
    put(tags::STUDY_DESCRIPTION, VR::LO, "DEMO");
    put(tags::SERIES_DESCRIPTION, VR::LO, &format!("series {series_number}"));
    put(tags::PATIENT_NAME, VR::PN, &format!("{patient}^Test"));
    put(tags::PATIENT_ID, VR::LO, &format!("{patient}_{modality}1"));
    put(tags::STUDY_INSTANCE_UID, VR::UI, study);
    put(tags::SERIES_INSTANCE_UID, VR::UI, series);
    put(tags::SERIES_NUMBER, VR::IS, series_number);
    put(tags::INSTANCE_NUMBER, VR::IS, &instance.to_string());
    o.put(DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U8(vec![instance as u8; 512].into())));
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax("1.2.840.10008.1.2.1")
        .media_storage_sop_class_uid(class)
        .media_storage_sop_instance_uid(sop.as_str());
    let file = o.with_meta(meta).unwrap();
    let mut bytes = Vec::new();
    file.write_all(&mut bytes).unwrap();
    bytes
}

pub fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in files {
        w.start_file(*name, opts).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}
