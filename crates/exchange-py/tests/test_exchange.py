"""The Python package against a running federation: catalog, access,
masked queries, lookups, batch lookups, audit and reports."""

import pathlib

import pyarrow as pa
import pytest

import exchange
from exchange.v1 import control_pb2 as pb

PURPOSE = "低保家庭财产核查"


def test_connect_names_a_missing_config(tmp_path):
    with pytest.raises(exchange.ExchangeError) as e:
        exchange.connect(tmp_path / "nowhere.toml")
    assert "nowhere.toml" in e.value.message and "exchange enroll" in e.value.message


def test_connect_reads_exchange_toml(ex, job):
    me = ex.whoami()
    assert me.member_id == job["analyst"]
    assert ex.config.cert_dir.is_dir()


def test_catalog_search_and_get(ex):
    ids = [d.id for d in ex.catalog.search("")]
    assert "real-estate/leases" in ids
    leases = ex.catalog.get("real-estate/leases")
    assert leases.department == "real-estate"
    assert any(f.name == "tenant_id" for f in leases.fields)
    with pytest.raises(exchange.ExchangeError) as e:
        ex.catalog.get("real-estate/nothing-here")
    assert e.value.code == "NOT_FOUND"


def test_access_request_once_then_owner_sees_it(ex, owner, job):
    dataset = job["ungranted"]
    with pytest.raises(exchange.ExchangeError) as e:
        ex.access.request(dataset, purpose=PURPOSE, fields=["no_such_field"])
    assert (e.value.code, e.value.reason) == ("INVALID_ARGUMENT", "FIELD_UNKNOWN")
    first = ex.access.request(dataset, purpose=PURPOSE)
    again = ex.access.request(dataset, purpose=PURPOSE)
    assert first.status == "pending" and first.state == pb.REQUEST_STATE_PENDING
    assert first.created_at.seconds == first.created_unix
    assert again.id == first.id, "an identical open request returns the first"
    assert any(r.id == first.id for r in ex.access.requests())


def test_query_returns_masked_typed_rows(ex, job):
    person = job["person"]
    table = ex.query(
        "public-security/household-registration",
        purpose=PURPOSE,
        fields=["person_id", "birth_date"],
        where=f"person_id = '{person}'",
    )
    assert table.num_rows == 1
    assert table.schema.field("birth_date").type == pa.int32(), "the year mask delivers a year"
    shown = table.column("person_id")[0].as_py()
    assert shown == person[:6] + "*" * 8 + person[14:]
    frame = exchange.to_pandas(table)
    assert str(frame["birth_date"].dtype) == "Int32"
    assert str(frame["person_id"].dtype).startswith("string")


def test_query_refusals_name_what_is_wrong(ex, job):
    with pytest.raises(exchange.ExchangeError) as e:
        ex.query(job["ungranted"], purpose=PURPOSE)
    assert "grant" in e.value.message and e.value.reason == "GRANT_MISSING"
    with pytest.raises(exchange.ExchangeError) as e:
        ex.query("real-estate/leases", purpose=" ")
    assert "purpose" in e.value.message
    with pytest.raises(exchange.ExchangeError) as e:
        ex.query("real-estate/leases", purpose=PURPOSE, fields=["landlord_id"])
    assert "landlord_id" in e.value.message and e.value.reason == "FIELD_NOT_GRANTED", e.value.reason


def test_lookup_across_departments(ex, job):
    result = ex.lookup("person_id", job["person"].lower(), purpose=PURPOSE)
    assert result.key == job["person"]
    by_dataset = {a.dataset: a for a in result.answers}
    registration = by_dataset["public-security/household-registration"]
    assert registration.status == "ok", registration.detail
    assert registration.rows == registration.table.num_rows == 1
    assert "real-estate/leases" in by_dataset


def test_lookup_refuses_a_bad_key_and_a_missing_purpose(ex, job):
    with pytest.raises(exchange.ExchangeError) as e:
        ex.lookup("person_id", "110101199003074510", purpose=PURPOSE)
    assert e.value.code == "INVALID_ARGUMENT" and "check" in e.value.message
    with pytest.raises(exchange.ExchangeError) as e:
        ex.lookup("person_id", job["person"], purpose="")
    assert "purpose" in e.value.message and e.value.reason == "PURPOSE_REQUIRED"
    with pytest.raises(exchange.ExchangeError) as e:
        ex.lookup("passport", job["person"], purpose=PURPOSE)
    assert "person_id" in e.value.message


def test_batch_lookup_streams_keys_and_reports_rejects(ex, job):
    keys = [job["person"], *job["others"], job["person"].lower(), "not-a-key"]
    result = ex.batch_lookup("person_id", keys, purpose=PURPOSE, chunk_size=2)
    assert result.keys == 1 + len(job["others"]) + 1, "repeats are looked up once; the bad key is counted and rejected"
    assert [k for k, _ in result.rejected] == ["NOT-A-KEY"]
    assert not result.failures, result.failures
    registration = result.tables["public-security/household-registration"]
    assert registration.num_rows == 1 + len(job["others"])
    with pytest.raises(exchange.ExchangeError) as e:
        ex.batch_lookup("person_id", keys, purpose=PURPOSE, datasets=[job["ungranted"]])
    assert e.value.code == "PERMISSION_DENIED" and job["ungranted"] in e.value.message
    assert e.value.reason == "GRANT_MISSING"


def test_audit_log_shows_our_queries(ex):
    log = ex.audit.log(dataset="public-security/household-registration")
    assert log.num_rows > 0
    assert log.schema.field("time").type == pa.timestamp("ms", tz="UTC")
    mine = log.filter(pa.compute.equal(log["user"], "Python 测试员"))
    assert mine.num_rows > 0 and mine["purpose"][0].as_py() == PURPOSE


def test_report_has_typed_columns(ex):
    report = ex.report("departments")
    assert report.num_rows > 0
    assert report.schema.field("department").type == pa.string()
    assert report.schema.field("queries_issued").type == pa.int64()
    assert report.schema.field("approval_turnaround_median_h").type == pa.float64()


def test_the_example_notebook_runs(job, monkeypatch):
    import json

    notebook = pathlib.Path(__file__).parent.parent / "examples" / "exchange.ipynb"
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    monkeypatch.setenv("EXCHANGE_CONFIG", job["analyst_config"])
    monkeypatch.setenv("EXCHANGE_PERSON", job["person"])
    namespace: dict = {}
    for cell in cells:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), str(notebook), "exec"), namespace)
    assert namespace["leases"].num_rows > 0
