<?php
$CONFIG = [
  'overwrite.cli.url' => 'https://cloud.example.com',
  'dbtype' => 'mysql',
  'dbhost' => 'db',
  'dbname' => 'nextcloud',
  'dbuser' => 'nc',
  'dbpassword' => 'secret',
  'redis' => [
    'host' => 'tls://redis.example.com',
    'port' => 6390,
    'password' => 'tls-secret',
    'ssl_context' => [
      'local_cert' => __DIR__ . '/certs/client.crt',
      'local_pk' => __DIR__ . '/certs/client.key',
      'cafile' => __DIR__ . '/certs/ca.crt',
      'verify_peer_name' => false,
    ],
  ],
];
