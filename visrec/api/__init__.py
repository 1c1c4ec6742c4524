"""visrec's REST API (Django REST framework). Include ``visrec.api.urls`` under any prefix."""
