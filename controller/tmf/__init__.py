"""TM Forum Open API facade (TMF620, 622, 637, 638, 666, 678) over the custom resources (docs/tmf.md).

The custom resources are the only store: reads come from a watch cache, writes go through the
Kubernetes API; authentication and authorization are Kubernetes' (TokenReview, SubjectAccessReview).
The pure mappings CR <-> TMF resource are per API: catalog (620), ordering (622), inventory (637, 638),
account (666), bill (678); conventions holds TMF630's paging, selection, filtering and errors.
"""
