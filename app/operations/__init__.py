"""FHIR operations ($everything, $lastn, $stats, $validate): services over the store and the search index, no HTTP."""
