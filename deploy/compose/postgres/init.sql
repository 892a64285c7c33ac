-- One database per service, made once when the PostgreSQL volume is
-- initialised (docker-entrypoint-initdb.d), owned by the `emporium` role the
-- services connect as (POSTGRES_USER). `emporium migrate` does not create
-- databases; it and every service apply their own tables.
CREATE DATABASE accounts;
CREATE DATABASE catalog;
CREATE DATABASE payments;
CREATE DATABASE orders;
CREATE DATABASE sandbox;
