<?php
$CONFIG = [
  'overwrite.cli.url' => 'http://localhost',
  'dbtype' => 'pgsql',
  'dbhost' => 'localhost:/var/run/postgresql',
  'dbname' => 'nextcloud',
  'dbuser' => 'www-data',
  'dbpassword' => '',
  'redis' => ['host' => '/var/run/redis/redis-server.sock', 'port' => 0, 'password' => 'sock-secret'],
];
