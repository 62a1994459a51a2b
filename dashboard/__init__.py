"""The analyst's dashboard (``streamlit run dashboard/app.py``): reads Kafka, writes only reviews.

The Kafka clients are in ``connectors`` (``topic_readers``, ``review_writer``). The feed
(``feed``), the decisions (``reviews``), validation (``records``), memory
(``buffer``, ``incidents``, ``totals``, ``error_log``), the job's progress
(``health``), the numbers and figures (``metrics``, ``figures``, ``clock``), the
checks of single fields (``fields``), which record a full book lets go (``eviction``)
and the settings (``config``) are plain modules without Streamlit, so they are tested
directly; ``views`` and ``app`` only lay them out.
"""
