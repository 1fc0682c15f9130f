#!/usr/bin/env python3
"""Independent reader of the assistlog archive: pyarrow reads the Parquet
objects through the S3 API (its own S3 client, no code shared with the Go
writer) with Hive partitioning; DuckDB runs SQL over them.

Environment: ASSISTLOG_S3_URL, ASSISTLOG_S3_ACCESS_KEY, ASSISTLOG_S3_SECRET_KEY,
ASSISTLOG_S3_BUCKET, ASSISTLOG_S3_REGION (default us-east-1), ARCHIVE_PREFIX.

Usage:
  read_archive.py rows             every row as a JSON line, with _key, tenant, dt
  read_archive.py sql "SELECT …"   run SQL over the view `events`, JSON lines out
"""
import json
import os
import sys
from urllib.parse import urlparse

import duckdb
import pyarrow.dataset as ds
import pyarrow.fs as pafs


def dataset():
    u = urlparse(os.environ["ASSISTLOG_S3_URL"])
    fs = pafs.S3FileSystem(
        access_key=os.environ["ASSISTLOG_S3_ACCESS_KEY"],
        secret_key=os.environ["ASSISTLOG_S3_SECRET_KEY"],
        endpoint_override=u.netloc, scheme=u.scheme,
        region=os.environ.get("ASSISTLOG_S3_REGION", "us-east-1"))
    base = os.environ["ASSISTLOG_S3_BUCKET"] + "/" + os.environ.get("ARCHIVE_PREFIX", "").strip("/")
    files = [f.path for f in fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
             if f.type == pafs.FileType.File and f.path.endswith(".parquet")]
    return ds.dataset(files, filesystem=fs, format="parquet", partitioning="hive",
                      partition_base_dir=base), files


def main():
    d, files = dataset()
    if sys.argv[1] == "rows":
        for f in files:
            t = ds.dataset(f, filesystem=d.filesystem, format="parquet").to_table()
            tenant = dt = None
            for seg in f.split("/"):
                if seg.startswith("tenant="):
                    tenant = seg[len("tenant="):]
                if seg.startswith("dt="):
                    dt = seg[len("dt="):]
            for row in t.to_pylist():
                row.update({"_key": f, "tenant": tenant, "dt": dt})
                print(json.dumps(row, default=str, ensure_ascii=False))
        return
    if sys.argv[1] == "sql":
        events = d.to_table() if files else None
        con = duckdb.connect()
        if events is None:
            print("archive is empty", file=sys.stderr)
            sys.exit(1)
        con.register("events_raw", events)
        # dt as a DATE, tenant as text, whatever pyarrow inferred.
        con.execute("CREATE VIEW events AS SELECT * REPLACE (CAST(dt AS DATE) AS dt, CAST(tenant AS VARCHAR) AS tenant) FROM events_raw")
        cur = con.execute(sys.argv[2])
        cols = [c[0] for c in cur.description]
        for r in cur.fetchall():
            print(json.dumps(dict(zip(cols, r)), default=str, ensure_ascii=False))
        return
    sys.exit(__doc__)


if __name__ == "__main__":
    main()
