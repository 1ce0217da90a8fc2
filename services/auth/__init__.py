"""Who is asking and what they may do: users, browser login sessions and their
account-wide slow-down, API tokens (and the caps of token sockets), the bearer-token and
session guards, and the role permissions of every door."""
