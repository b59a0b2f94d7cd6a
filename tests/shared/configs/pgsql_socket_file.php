<?php
$CONFIG = [
  'overwrite.cli.url' => 'http://localhost',
  'dbtype' => 'pgsql',
  'dbhost' => '/run/postgresql/.s.PGSQL.5433',
  'dbname' => 'nextcloud',
  'dbuser' => 'nextcloud',
  'dbpassword' => 'x',
  'redis' => ['host' => 'redis'],
];
