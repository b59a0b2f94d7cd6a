<?php
$CONFIG = array(
  'overwrite.cli.url' => 'https://cloud.example.com',
  'dbtype' => 'mysql',
  'dbhost' => 'localhost:/run/mysqld/mysqld.sock',
  'dbname' => 'nextcloud',
  'dbuser' => 'nc',
  'dbpassword' => 'secret',
  'redis' => array('host' => 'redis.internal:6390', 'timeout' => 1.5),
);
