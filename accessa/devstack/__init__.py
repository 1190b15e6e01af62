"""The development cluster for laptops and tests: the embedded KRaft Kafka (kafka.py), Postgres
(postgres.py) and PgBouncer, their TLS certificates and ACLs, and the process helpers. Started
by `accessa infra up` and the test fixtures; production code never imports it (the brokers and
the database of a deployment are its own), tests/unit/test_import_floors.py checks that."""
