-- The head of a count: `console.rs` appends the filter's conditions.
SELECT count(*) FROM {schema}.tasks
