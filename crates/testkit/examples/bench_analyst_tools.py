"""The Python half of bench_analyst_tools: ADBC's Flight SQL driver and
pyarrow's plain Flight client against the same coordinator.

Reads a job (JSON) on standard input, prints timings (JSON) on standard output.
"""
import json
import sys
import time
import urllib.parse

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow.flight as flight
from adbc_driver_flightsql import DatabaseOptions as O


def read(job, name):
    with open(f"{job['cert_dir']}/{name}", "rb") as f:
        return f.read()


def main():
    job = json.load(sys.stdin)
    schema, table = job["table"]
    conn = flight_sql.connect(
        f"grpc+tls://{job['address']}",
        db_kwargs={
            O.TLS_ROOT_CERTS.value: read(job, "ca.crt").decode(),
            O.MTLS_CERT_CHAIN.value: read(job, "client.crt").decode(),
            O.MTLS_PRIVATE_KEY.value: read(job, "client.key").decode(),
            O.RPC_CALL_HEADER_PREFIX.value + "x-exchange-purpose": urllib.parse.quote(job["purpose"]),
        },
    )
    single = []
    with conn.cursor() as cur:
        for key in job["keys"]:
            sql = f'SELECT * FROM "{schema}"."{table}" WHERE person_id = \'{key}\''
            t = time.perf_counter()
            cur.execute(sql)
            rows = cur.fetch_arrow_table().num_rows
            single.append((time.perf_counter() - t) * 1e3)
            assert rows == 1, (key, rows)
    adbc_export, pyarrow_export = [], []
    client = flight.FlightClient(
        f"grpc+tls://{job['address']}",
        tls_root_certs=read(job, "ca.crt"),
        cert_chain=read(job, "client.crt"),
        private_key=read(job, "client.key"),
    )
    command = json.dumps({"dataset": f"{schema}/{table}", "purpose": job["purpose"]}).encode()
    for _ in range(job["export_rounds"]):
        with conn.cursor() as cur:
            t = time.perf_counter()
            cur.execute(f'SELECT * FROM "{schema}"."{table}"')
            frame = cur.fetch_df()
            adbc_export.append((len(frame), time.perf_counter() - t))
        t = time.perf_counter()
        frame = client.do_get(flight.Ticket(command)).read_all().to_pandas()
        pyarrow_export.append((len(frame), time.perf_counter() - t))
    conn.close()
    print(json.dumps({"adbc_single_ms": single, "adbc_export": adbc_export, "pyarrow_export": pyarrow_export}))


main()
