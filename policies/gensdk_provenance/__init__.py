"""gensdk_provenance: signed provenance manifests for every released output.

* ``provenance`` (`ProvenancePolicy`): an Ed25519-signed manifest per output (model identity and digest,
  licence and training-data source, every policy's verdict, the output's digest, the audit record's id and
  hash), signed after the audit commit through the `finalize_output` hook; optionally a C2PA manifest
  (`trainedAlgorithmicMedia`) for images through c2pa-python.
* `write_outputs(outputs, directory)`: PNGs with the manifest embedded, texts and tables with a sidecar.
* `gensdk verify FILE`: checks signature, content digest, pinned key, audit trail and C2PA.

See docs/provenance.md.
"""

from gensdk_provenance.manifest import Verification, verify_file, verify_manifest, write_outputs
from gensdk_provenance.plugin import ProvenancePolicy

__all__ = ["ProvenancePolicy", "Verification", "verify_file", "verify_manifest", "write_outputs"]
