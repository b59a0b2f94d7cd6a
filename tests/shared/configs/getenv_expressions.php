<?php
$CONFIG = [
  'overwrite.cli.url' => 'https://' . getenv('NC_DOMAIN') . '/',
  'dbtype' => 'pgsql',
  'dbhost' => getenv('POSTGRES_HOST') . ':' . (5000 + 432),
  'dbname' => getenv('POSTGRES_DB') ?: 'nextcloud',
  'dbuser' => getenv('POSTGRES_USER'),
  'dbpassword' => getenv('POSTGRES_PASSWORD'),
  'dbport' => getenv('UNSET_VARIABLE'),
  'filelocking.ttl' => 60 * 5,
  'trashbin_retention_obligation' => 'auto, ' . 30 * 2,
  'redis' => [
    'host' => getenv('REDIS_HOST') ?: 'redis',
    'password' => (string) getenv('REDIS_HOST_PASSWORD'),
  ],
];
