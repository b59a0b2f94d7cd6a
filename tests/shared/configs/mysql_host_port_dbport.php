<?php
$CONFIG = array(
  'overwrite.cli.url' => 'https://cloud.example.com',
  'dbtype' => 'mysql',
  'dbhost' => 'db.example.com',
  'dbport' => '3307',
  'dbname' => 'nextcloud',
  'dbuser' => 'nc',
  'dbpassword' => 'secret',
  'redis' => array('host' => 'redis'),
);
