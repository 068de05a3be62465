"""The HealthDCAT-AP export against the project's SHACL shapes (hub/registry/healthdcat-shapes.ttl),
with pySHACL; each shape is shown to bite by an export with that one property broken."""

from __future__ import annotations

import copy
import json

import pytest
from pyshacl import validate
from rdflib import Graph
from rdflib.compare import isomorphic

from hub import registry as reg
from hub.kernel.db import session_scope
from hub.registry.catalogue import EHDS_ELI, SHAPES, Publisher, catalog_jsonld, catalog_turtle
from tests.fixtures_registry import CUSTODIAN

# pySHACL calls an rdflib API that rdflib 7 deprecates, thousands of times per validation.
pytestmark = pytest.mark.filterwarnings("ignore:Dataset.default_context is deprecated:DeprecationWarning")
PUBLISHER = Publisher("Example Health TRE", "access@example.org", "Example HDAB", "https://portal.example/c")


@pytest.fixture
def doc(registry, make_users, tmp_path) -> dict:
    make_users()
    patients = tmp_path / "patients.csv"
    patients.write_text("person_id,date_of_birth,postcode,hba1c\n1,1950-01-02,AB1,48\n2,1970-05-06,CD2,61\n")
    labs = tmp_path / "labs.csv"
    labs.write_text("person_id,atc_code\n1,A10BA02\n")
    with session_scope(registry) as s:
        reg.register_dataset(
            s, CUSTODIAN, "diabetes", [reg.SourceFile("patients", patients), reg.SourceFile("labs", labs)],
            "person_id", title="Diabetes cohort",
        )  # fmt: skip
        return catalog_jsonld(s, "https://tre.example/", publisher=PUBLISHER)


def conforms(doc: dict) -> tuple[bool, str]:
    data = Graph().parse(data=json.dumps(doc), format="json-ld")
    ok, _, text = validate(data, shacl_graph=str(SHAPES), shacl_graph_format="turtle")
    return ok, text


def test_the_export_conforms_to_the_shapes(doc):
    ok, report = conforms(doc)
    assert ok, report
    [node] = doc["dcat:dataset"]
    assert node["dcatap:applicableLegislation"] == {"@id": EHDS_ELI}
    assert {d["dct:title"] for d in node["dcat:distribution"]} == {"patients", "labs"}
    assert node["healthdcatap:hdab"]["foaf:name"] == "Example HDAB"
    assert node["healthdcatap:healthCategory"] == [
        {"@id": "https://hdeu-dcat.data.health.europa.eu/resource/authority/healthcategories/EHRS"}
    ]
    assert node["healthdcatap:hasStructuredData"]["@value"] == "true"
    tables = {t["dct:title"]: t["csvw:column"] for t in node["healthdcatap:hasVariables"]["csvw:table"]}
    assert [c["csvw:name"] for c in tables["patients"]] == ["person_id", "date_of_birth", "postcode", "hba1c"]
    assert {c["csvw:name"]: c["csvw:datatype"] for c in tables["patients"]}["date_of_birth"] == "date"
    [atc] = [c for c in tables["labs"] if c["csvw:name"] == "atc_code"]
    assert atc["csvw:propertyUrl"] == {"@id": "https://www.wikidata.org/entity/P267"}
    assert "AB1" not in json.dumps(doc) and "1950" not in json.dumps(doc)  # no record leaves


def _broken(doc: dict, change) -> dict:
    copy_ = copy.deepcopy(doc)
    change(copy_["dcat:dataset"][0])
    return copy_


@pytest.mark.parametrize(
    ("what", "change"),
    [
        ("no applicable legislation", lambda d: d.pop("dcatap:applicableLegislation")),
        (
            "public access rights",
            lambda d: d.update(
                {
                    "dct:accessRights": {
                        "@id": "http://publications.europa.eu/resource/authority/access-right/PUBLIC"
                    }
                }
            ),
        ),
        ("no health data access body", lambda d: d.pop("healthdcatap:hdab")),
        ("no distribution", lambda d: d.pop("dcat:distribution")),
        ("a distribution without an access URL", lambda d: d["dcat:distribution"][0].pop("dcat:accessURL")),
        ("a contact without an email", lambda d: d["dcat:contactPoint"].pop("vcard:hasEmail")),
        ("no record count", lambda d: d.pop("healthdcatap:numberOfRecords")),
        ("no keywords", lambda d: d.pop("dcat:keyword")),
        ("no provenance", lambda d: d.pop("dct:provenance")),
        ("no health category", lambda d: d.pop("healthdcatap:healthCategory")),
        (
            "a health category from outside the vocabulary",
            lambda d: d.update({"healthdcatap:healthCategory": [{"@id": "https://example.org/cats/EHR"}]}),
        ),
        ("no structured-data flag", lambda d: d.pop("healthdcatap:hasStructuredData")),
        ("structured data without its variables", lambda d: d.pop("healthdcatap:hasVariables")),
        (
            "a table group without tables",
            lambda d: d["healthdcatap:hasVariables"].pop("csvw:table"),
        ),
        (
            "a variable without a datatype",
            lambda d: d["healthdcatap:hasVariables"]["csvw:table"][0]["csvw:column"][0].pop("csvw:datatype"),
        ),
        (
            "a datatype CSVW does not name (datetime for dateTime)",
            lambda d: d["healthdcatap:hasVariables"]["csvw:table"][0]["csvw:column"][1].update(
                {"csvw:datatype": "datetime"}
            ),
        ),
        (
            "a variable without a description",
            lambda d: d["healthdcatap:hasVariables"]["csvw:table"][0]["csvw:column"][0].pop(
                "dct:description"
            ),
        ),
    ],
)
def test_each_shape_refuses_an_export_that_breaks_it(doc, what, change):
    ok, _ = conforms(_broken(doc, change))
    assert not ok, f"{what}: the shapes let it through"


def test_the_turtle_is_the_same_graph(doc):
    turtle = catalog_turtle(doc)
    assert turtle.startswith("@prefix") and "healthdcatap:numberOfUniqueIndividuals" in turtle
    assert "healthdcatap:hasVariables" in turtle and "csvw:TableGroup" in turtle
    as_jsonld = Graph().parse(data=json.dumps(doc), format="json-ld")
    assert isomorphic(Graph().parse(data=turtle, format="turtle"), as_jsonld)
