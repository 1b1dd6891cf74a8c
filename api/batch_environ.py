"""The WSGI environ keys a batch sets on each of its sub-requests (clients cannot set them).

Shared by the batch dispatcher (`api.batch`), which sets them, and the request machinery
that treats sub-requests differently: auth takes the batch's key, rate limits do not
charge again, the database connection stays open for the batch.
"""

SUBREQUEST = "quiver.batch"
BATCH_KEY = "quiver.batch.key"
