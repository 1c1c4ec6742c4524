"""Online A/B tests of "for you": who is in which arm (:mod:`.assignment`), what each arm
serves (:func:`visrec.services.foryou.recommend.recommend_for_request`), and the report per
arm released through the privacy ledger (:mod:`.report`)."""
