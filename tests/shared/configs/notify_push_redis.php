<?php
$CONFIG = [
  'overwrite.cli.url' => 'https://cloud.example.com',
  'dbtype' => 'mysql',
  'dbhost' => 'db',
  'dbname' => 'nextcloud',
  'dbuser' => 'nc',
  'dbpassword' => 'secret',
  'redis' => ['host' => 'cache-redis'],
  'notify_push_redis' => ['host' => 'push-redis', 'port' => 6400, 'dbindex' => '1'],
];
