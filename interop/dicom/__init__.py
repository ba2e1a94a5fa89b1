"""The DICOM feed: C-STORE (pynetdicom) into blob storage and an index of instances, mapped to ImagingStudy."""
