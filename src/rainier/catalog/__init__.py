"""The data catalog: YAML files shipped in this package, and the strict reader they are loaded with.

The YAML files (``accelerators.yaml``, ``systems.yaml``, ``fabrics.yaml``, ``clusters.yaml``,
``models.yaml``, ``sources.yaml``) hold every hardware number and named model. They are read through
:class:`Fields`, which rejects unknown keys, checks types and ranges, and enforces that every number an
entry states is covered by a source (``sources: {field: SOURCE_ID, default: SOURCE_ID}``) whose id is listed
in ``sources.yaml`` or is a URL. Typed objects are built from these readers by the ``hardware`` and
``workload`` layers; this module knows nothing of accelerators or models.
"""

from rainier.catalog.loader import (
    CatalogError,
    Fields,
    Registry,
    SourceIndex,
    catalog_file,
    load_entries,
    load_yaml,
    source_index,
)

__all__ = [
    "CatalogError",
    "Fields",
    "Registry",
    "SourceIndex",
    "catalog_file",
    "load_entries",
    "load_yaml",
    "source_index",
]
