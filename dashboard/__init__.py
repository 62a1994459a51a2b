"""The analyst's dashboard (``streamlit run dashboard/app.py``): reads Kafka, writes only reviews.

The Kafka clients are in ``connectors`` (``topic_readers``, ``review_writer``). The feed
(``feed``), the decisions (``reviews``), validation (``records``), memory
(``buffer``, ``incidents``, ``totals``, ``error_log``), the job's progress
(``health``) and the numbers and figures (``metrics``, ``figures``, ``clock``)
are plain modules without Streamlit, so they are tested directly; ``views`` and
``app`` only lay them out.
"""
