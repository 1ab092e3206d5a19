"""spotbot: run machine-learning bots over the files of an S3 prefix, tracked in Elasticsearch."""

__version__ = "0.1.0"
