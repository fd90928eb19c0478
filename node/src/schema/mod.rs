//! One SchemaRegion's timeseries schema.
