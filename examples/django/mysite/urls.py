from django.urls import include, path

from board import views

urlpatterns = [
    path("", views.board, name="board"),
    path("notices", views.post_notice, name="post_notice"),
    path("push-token", views.push_token, name="push_token"),
    path("accounts/", include("django.contrib.auth.urls")),  # login, logout
]
