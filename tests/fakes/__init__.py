"""Local stand-ins (127.0.0.1 only) for the warehouses that cannot run here.

Each fake speaks the service's real wire protocol so the real client library runs
its own code paths against it: fakesnow's server and an HTTP stub for Snowflake, a
BigQuery REST server, and an HTTPS Thrift server for Databricks.
"""
