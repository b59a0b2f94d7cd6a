<?php
$CONFIG = array (
  'overwrite.cli.url' => 'https://main.example.com',
  'dbtype' => 'mysql',
  'dbhost' => 'db',
  'dbname' => 'nextcloud',
  'dbuser' => 'nc',
  'dbpassword' => 'secret',
  'redis' => array('host' => 'from-main'),
);
