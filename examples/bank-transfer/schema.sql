CREATE TABLE accounts (
    owner   text PRIMARY KEY,
    balance integer NOT NULL CHECK (balance >= 0)
);
