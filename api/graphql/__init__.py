"""GraphQL over the entity registry (`POST /api/v1/graphql`).

The schema is generated from `api.entities.ENTITIES` (`schema.py`, named by
`names.py`); list arguments become the REST list query (`arguments.py`);
records are read and written only through `RecordService` (`resolvers.py`),
with relations loaded once per batch of sibling records (`loading.py`);
`limits.py` bounds depth and cost and `execution.py` runs one request.
"""
