"""The dataset catalogue as HealthDCAT-AP (DCAT-AP 3 with the health extension): JSON-LD and Turtle.

Only metadata leaves here: titles, counts, the typical age range and the coding systems in use, never
row-level data. Opt-out lists are governance data, not research data, and are not catalogued.

Every dataset is described as non-public health data: access rights NON_PUBLIC, the EHDS regulation
as applicable legislation, the publisher, a contact point and the health data access body (the
site's, from its settings), its tables as distributions that are reached only through an access
application, keywords, a provenance statement, its EHDS Art. 51 health categories, and its tables
and columns as a CSVW table group (structured data with its variables).
hub/registry/healthdcat-shapes.ttl holds the SHACL shapes the export must satisfy (checked with
pySHACL in tests/unit/test_catalogue_shapes.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rdflib import Graph
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.kernel.settings import Settings
from hub.registry.models import Dataset
from hub.registry.vocabulary import DatasetKind, HealthCategory

CONTEXT = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "dcatap": "http://data.europa.eu/r5r/",
    "healthdcatap": "http://healthdataportal.eu/ns/health#",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "vcard": "http://www.w3.org/2006/vcard/ns#",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "owl": "http://www.w3.org/2002/07/owl#",
    "csvw": "http://www.w3.org/ns/csvw#",
}
NON_PUBLIC = "http://publications.europa.eu/resource/authority/access-right/NON_PUBLIC"
# Regulation (EU) 2025/327 on the European Health Data Space, by its ELI.
EHDS_ELI = "http://data.europa.eu/eli/reg/2025/327/oj"
PARQUET = "http://publications.europa.eu/resource/authority/file-type/PARQUET"
SHAPES = Path(__file__).with_name("healthdcat-shapes.ttl")


@dataclass(frozen=True)
class Publisher:
    """Who publishes the catalogue and decides on access (the site's settings)."""

    name: str
    email: str
    access_body: str  # the health data access body that issues permits
    access_url: str  # where an application for access starts (the portal)

    @classmethod
    def from_settings(cls, settings: Settings) -> Publisher:
        return cls(
            settings.catalogue_publisher,
            settings.catalogue_contact,
            settings.hdab_name or settings.catalogue_publisher,
            settings.service_url("portal") + "catalogue",
        )


def _agent(name: str, email: str) -> dict[str, Any]:
    return {
        "@type": "foaf:Agent",
        "foaf:name": name,
        "dcat:contactPoint": {
            "@type": "vcard:Kind",
            "vcard:fn": name,
            "vcard:hasEmail": {"@id": f"mailto:{email}"},
        },
    }


# HealthDCAT-AP names coding systems by their Wikidata property.
CODING_SYSTEM_URIS = {
    "ATC": "https://www.wikidata.org/entity/P267",
    "ICD-O-3": "https://www.wikidata.org/entity/P563",
    "ICD-10": "https://www.wikidata.org/entity/P494",
    "SNOMED CT": "https://www.wikidata.org/entity/P5806",
    "LOINC": "https://www.wikidata.org/entity/P4338",
}


def _count(value: int) -> dict[str, Any]:
    return {"@value": str(value), "@type": "xsd:nonNegativeInteger"}


def _time(value: datetime) -> dict[str, Any]:
    return {"@value": value.isoformat(), "@type": "xsd:dateTime"}


def coding_systems(dataset: Dataset) -> list[str]:
    found = {c["coding_system"] for t in dataset.tables for c in t["columns"] if c.get("coding_system")}
    return sorted(found)


# CSVW's built-in datatype names (case matters: dateTime) for the engine's column types.
CSVW_DATATYPES = {
    "BOOLEAN": "boolean",
    "TINYINT": "integer",
    "SMALLINT": "integer",
    "INTEGER": "integer",
    "BIGINT": "integer",
    "HUGEINT": "integer",
    "FLOAT": "float",
    "DOUBLE": "double",
    "DATE": "date",
    "TIME": "time",
    "TIMESTAMP": "dateTime",
    "TIMESTAMP WITH TIME ZONE": "dateTime",
}
SENSITIVITY_NOTES = {
    "identifier": "Identifies a person: pseudonymised per project before any researcher sees it.",
    "quasi-identifier": "May identify a person in combination with others: released only if a "
    "permit names it.",
    "sensitive": "Sensitive health information: released only if a permit names it.",
    "other": "Research variable.",
}


def csvw_datatype(engine_type: str) -> str:
    if engine_type.startswith("DECIMAL"):
        return "decimal"
    return CSVW_DATATYPES.get(engine_type, "string")


def _variables(dataset: Dataset, uri: str) -> dict[str, Any]:
    """Its tables and columns as a CSVW table group (HealthDCAT-AP hasVariables): names, types and
    what each column is, never a value."""

    def column(table: str, c: dict[str, Any]) -> dict[str, Any]:
        note = SENSITIVITY_NOTES.get(c["sensitivity"], SENSITIVITY_NOTES["other"])
        node = {
            "@id": f"{uri}/variables/{table}/{c['name']}",
            "@type": "csvw:Column",
            "csvw:name": c["name"],
            "csvw:title": c["name"],
            "csvw:datatype": csvw_datatype(c["type"]),
            "dct:description": note + (f" Coded in {c['coding_system']}." if c.get("coding_system") else ""),
        }
        if c.get("coding_system") in CODING_SYSTEM_URIS:
            node["csvw:propertyUrl"] = {"@id": CODING_SYSTEM_URIS[c["coding_system"]]}
        return node

    return {
        "@id": f"{uri}/variables",
        "@type": "csvw:TableGroup",
        "dct:title": f"Tables and columns of {dataset.title or dataset.name}",
        "csvw:table": [
            {
                "@id": f"{uri}/variables/{t['name']}",
                "@type": "csvw:Table",
                "dct:title": t["name"],
                "csvw:column": [column(t["name"], c) for c in t["columns"]],
            }
            for t in dataset.tables
        ],
    }


def dataset_node(dataset: Dataset, base_uri: str, publisher: Publisher) -> dict[str, Any]:
    uri = f"{base_uri}dataset/{dataset.name}/{dataset.version}"
    node: dict[str, Any] = {
        "@id": uri,
        "@type": "dcat:Dataset",
        "dct:identifier": dataset.ref,
        "dct:title": dataset.title or dataset.name,
        "dct:description": dataset.description or f"The {dataset.name} dataset, version {dataset.version}.",
        "dct:accessRights": {"@id": NON_PUBLIC},
        "dcatap:applicableLegislation": {"@id": EHDS_ELI},
        "dct:publisher": _agent(publisher.name, publisher.email),
        "dcat:contactPoint": _agent(publisher.name, publisher.email)["dcat:contactPoint"],
        "healthdcatap:hdab": _agent(publisher.access_body, publisher.email),
        "dcat:keyword": sorted(
            {dataset.name, *(t["name"] for t in dataset.tables), *coding_systems(dataset)}
        ),
        "dct:provenance": {
            "@type": "dct:ProvenanceStatement",
            "rdfs:label": f"Registered by its data custodian from {len(dataset.tables)} source table(s); "
            f"content hash {dataset.content_hash}.",
        },
        "dcat:distribution": [
            {
                "@id": f"{uri}/{t['name']}",
                "@type": "dcat:Distribution",
                "dct:title": t["name"],
                "dct:format": {"@id": PARQUET},
                "dcat:accessURL": {"@id": publisher.access_url},
                "dct:accessRights": {"@id": NON_PUBLIC},
                "dcatap:applicableLegislation": {"@id": EHDS_ELI},
            }
            for t in dataset.tables
        ],
        "owl:versionInfo": str(dataset.version),
        "dct:issued": _time(dataset.created_at),
        "healthdcatap:numberOfRecords": _count(dataset.row_count),
        "healthdcatap:numberOfUniqueIndividuals": _count(dataset.unique_individuals),
        "healthdcatap:healthCategory": [{"@id": HealthCategory(c).iri} for c in dataset.health_categories],
        # Every TRE dataset is tables of typed columns: structured, with its variables described.
        "healthdcatap:hasStructuredData": {"@value": "true", "@type": "xsd:boolean"},
        "healthdcatap:hasVariables": _variables(dataset, uri),
    }
    profile = dataset.profile or {}
    if "min_typical_age" in profile:
        node["healthdcatap:minTypicalAge"] = _count(max(0, profile["min_typical_age"]))
        node["healthdcatap:maxTypicalAge"] = _count(max(0, profile["max_typical_age"]))
    systems = coding_systems(dataset)
    if systems:
        # Recognised systems as their Wikidata URI; others by name, so nothing is silently dropped.
        node["healthdcatap:hasCodingSystem"] = [
            {"@id": CODING_SYSTEM_URIS[s]} if s in CODING_SYSTEM_URIS else s for s in systems
        ]
    return node


def catalog_jsonld(
    session: Session,
    base_uri: str = "urn:tre:",
    title: str = "TRE dataset catalogue",
    publisher: Publisher | None = None,
) -> dict:
    """A dcat:Catalog with the latest version of every research (cohort) dataset."""
    publisher = publisher or Publisher("TRE", "tre@localhost", "TRE", f"{base_uri}catalogue")
    latest = _latest(session)
    return {
        "@context": CONTEXT,
        "@id": f"{base_uri}catalog",
        "@type": "dcat:Catalog",
        "dct:title": title,
        "dct:description": "Research datasets held in the TRE; access by application only.",
        "dct:publisher": _agent(publisher.name, publisher.email),
        "dcat:dataset": [dataset_node(latest[name], base_uri, publisher) for name in sorted(latest)],
    }


def catalog_turtle(doc: dict) -> str:
    """The same catalogue as Turtle (rdflib reads the JSON-LD with its inline context: no network)."""
    graph = Graph()
    graph.parse(data=json.dumps(doc), format="json-ld")
    for prefix, namespace in CONTEXT.items():
        graph.bind(prefix, namespace)
    return graph.serialize(format="turtle")


# --- the catalogue as people browse it (the portal) -------------------------------------------------


@dataclass(frozen=True)
class ColumnEntry:
    name: str
    type: str
    sensitivity: str
    coding_system: str | None


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    version: int
    title: str
    description: str
    custodian: str
    registered: datetime
    records: int
    individuals: int
    health_categories: list[HealthCategory]
    min_age: int | None
    max_age: int | None
    coding_systems: list[str]
    tables: list[tuple[str, list[ColumnEntry]]]

    @property
    def sensitive_columns(self) -> int:
        return sum(1 for _, cols in self.tables for c in cols if c.sensitivity != "other")


def _entry(ds: Dataset) -> DatasetEntry:
    profile = ds.profile or {}
    return DatasetEntry(
        name=ds.name,
        version=ds.version,
        title=ds.title or ds.name,
        description=ds.description,
        custodian=ds.custodian.username,
        registered=ds.created_at,
        records=ds.row_count,
        individuals=ds.unique_individuals,
        health_categories=[HealthCategory(c) for c in ds.health_categories],
        min_age=profile.get("min_typical_age"),
        max_age=profile.get("max_typical_age"),
        coding_systems=coding_systems(ds),
        tables=[
            (
                t["name"],
                [
                    ColumnEntry(c["name"], c["type"], c["sensitivity"], c.get("coding_system"))
                    for c in t["columns"]
                ],
            )
            for t in ds.tables
        ],
    )


def _latest(session: Session) -> dict[str, Dataset]:
    latest: dict[str, Dataset] = {}
    for ds in session.execute(
        select(Dataset).where(Dataset.kind == DatasetKind.COHORT).order_by(Dataset.version)
    ).scalars():
        latest[ds.name] = ds
    return latest


# Per database: a dataset version never changes once registered (a change is a new version), so a
# listing stays right until a version is added, which (count, highest id) tells in one small query.
_listings: dict[str, tuple[tuple[Any, ...], dict[str, DatasetEntry]]] = {}
_LISTING_STAMP = select(func.count(Dataset.id), func.max(Dataset.id))  # built once: every page asks it


def _listing(session: Session) -> dict[str, DatasetEntry]:
    key = str(session.get_bind().url)
    stamp = tuple(session.execute(_LISTING_STAMP).one())
    cached = _listings.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    latest = _latest(session)
    by_name = {name: _entry(latest[name]) for name in sorted(latest)}
    _listings[key] = (stamp, by_name)
    return by_name


def catalogue_entries(session: Session) -> list[DatasetEntry]:
    """The latest version of every research dataset, by name: metadata only, never rows."""
    return list(_listing(session).values())


def catalogue_entry(session: Session, name: str) -> DatasetEntry | None:
    return _listing(session).get(name)
