<?php
$CONFIG = array (
  'overwrite.cli.url' => 'http://localhost',
  'datadirectory' => '/srv/nc-data',
  'dbname' => 'cloud',
  'redis' => ['host' => '127.0.0.1'],
);
